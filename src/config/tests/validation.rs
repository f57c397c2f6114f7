use super::*;

/// Problems as (line, reason) for assertions that name both.
fn problems(text: &str) -> Vec<(Option<usize>, String)> {
    match parse(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.into_iter().map(|p| (p.line, p.reason)).collect(),
    }
}

fn expect(got: &[(Option<usize>, String)], line: usize, needle: &str) {
    assert!(
        got.iter()
            .any(|(l, r)| *l == Some(line) && r.contains(needle)),
        "no problem at line {line} containing {needle:?} in {got:#?}"
    );
}

/// Every field that names an address: a written port must be 1 to 65535 (the proxy's and the
/// admin's own listen addresses may say 0, "any free port").
#[test]
fn out_of_range_ports_are_refused_at_their_line() {
    let text = "\
listen: 0.0.0.0:99999
primary: http://127.0.0.1:99999
candidate: http://[::1]:70000
secondary: http://legacy:0
admin: {listen: \"127.0.0.1:65536\", allowed_hosts: [\"ops.example:99999\"]}
sinks:
  kafka:
    brokers: \"k1:9092,k2:99999\"
";
    let got = problems(text);
    expect(&got, 1, "listen:");
    expect(
        &got,
        2,
        "primary: \"http://127.0.0.1:99999\": port \"99999\"",
    );
    expect(&got, 3, "candidate: \"http://[::1]:70000\": port \"70000\"");
    expect(&got, 4, "secondary: \"http://legacy:0\": port \"0\"");
    expect(&got, 5, "admin.listen:");
    expect(&got, 5, "admin.allowed_hosts:");
    expect(&got, 8, "sinks.kafka.brokers: broker \"k2:99999\": port");
    assert_eq!(got.len(), 7, "{got:#?}");

    // The edges, and what is not a port at all.
    for (s, ok) in [
        ("http://h:1", true),
        ("http://h:65535", true),
        ("http://h", true),
        ("http://[::1]:8080", true),
        ("http://h:65536", false),
        ("http://h:", false),
        ("http://h:+80", false),
        ("http://[::1]:", false),
    ] {
        assert_eq!(Upstream::parse(s).is_ok(), ok, "{s}");
    }
    for (b, ok) in [
        ("k:9092", true),
        ("k", true),
        ("SSL://k:9093, [::1]:9092", true),
        ("k:0", false),
        ("k:9092,", false),
        (":9092", false),
        ("k:90a", false),
    ] {
        assert_eq!(crate::units::de::check_brokers(b).is_ok(), ok, "{b}");
    }
    // Port 0 for a listen address is "any free port".
    let c = parse("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n").unwrap();
    assert_eq!(c.listen.port(), 0);
}

/// A duration or size where zero makes no sense is refused at its line, in every section; the
/// two durations where zero means something (`shutdown_grace`: stop at once; `overload.after`:
/// shed on the first busy sample) keep accepting it.
#[test]
fn zero_durations_and_sizes_are_refused_where_they_make_no_sense() {
    let text = "\
shadow:
  timeout: 0s
  max_body_bytes: 0
  max_buffered_bytes: 0B
  circuit:
    cooldown: 0ms
compare:
  max_decoded_bytes: 0KiB
publish:
  max_body_bytes: 0
stats:
  window: 0s
  bucket: 0.0001us
sinks:
  file:
    rotate_bytes: 0
  kafka:
    delivery_timeout: 0s
    stats_interval: 0s
    spool_max_bytes: 0
";
    let got = problems(text);
    for (line, needle) in [
        (2, "shadow.timeout: must be longer than 0"),
        (3, "shadow.max_body_bytes: must be at least 1 byte"),
        (4, "shadow.max_buffered_bytes: must be at least 1 byte"),
        (6, "shadow.circuit.cooldown: must be longer than 0"),
        (8, "compare.max_decoded_bytes: must be at least 1 byte"),
        (10, "publish.max_body_bytes: must be at least 1 byte"),
        (12, "stats.window: must be longer than 0"),
        (13, "stats.bucket: must be longer than 0"),
        (16, "sinks.file.rotate_bytes: must be at least 1 byte"),
        (18, "sinks.kafka.delivery_timeout: must be longer than 0"),
        (19, "sinks.kafka.stats_interval: must be longer than 0"),
        (20, "sinks.kafka.spool_max_bytes: must be at least 1 byte"),
    ] {
        expect(&got, line, needle);
    }
    assert_eq!(got.len(), 12, "{got:#?}");

    let c = parse("shutdown_grace: 0s\nshadow:\n  overload: {after: 0s}\n").unwrap();
    assert!(c.shutdown_grace.is_zero() && c.shadow.overload.after.is_zero());

    // Negative and absurdly long ones are refused everywhere.
    let got = problems("shadow:\n  timeout: -5s\nshutdown_grace: 106751991167301d\n");
    expect(&got, 2, "shadow.timeout: invalid duration \"-5s\"");
    expect(
        &got,
        3,
        "shutdown_grace: duration \"106751991167301d\" is longer than a year",
    );
}

/// Every duration and size deserialiser in use was chosen on purpose: a field added with the
/// plain `duration`/`size` (zero accepted) must be listed here with the reason zero makes sense.
#[test]
fn every_duration_and_size_field_says_whether_zero_is_allowed() {
    let allowed_zero = [
        ("src/config/mod.rs", "shutdown_grace"), // stop at once
        ("src/ingest/config.rs", "after"),       // shed on the first busy sample
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root.clone()];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if l.contains("deserialize_with")
                    && (l.contains("de::duration\"") || l.contains("de::size\""))
                {
                    let field = lines
                        .get(i + 1)
                        .and_then(|f| f.trim().strip_prefix("pub "))
                        .and_then(|f| f.split(':').next())
                        .unwrap_or("?")
                        .to_string();
                    let rel = p.strip_prefix(root.parent().unwrap()).unwrap();
                    found.push((rel.display().to_string(), field));
                }
            }
        }
    }
    for (file, field) in &found {
        assert!(
            allowed_zero.iter().any(|(f, n)| f == file && n == field),
            "{file}: `{field}` accepts a zero duration or size: use de::positive_duration / \
             de::positive_size, or list it here with why zero makes sense"
        );
    }
    assert_eq!(found.len(), allowed_zero.len(), "{found:?}");
}

/// The YAML limits hold for the config: a deep file is refused at its line before parsing,
/// a huge file before parsing, and alias expansion is bounded.
#[test]
fn hostile_yaml_is_refused_with_file_and_line() {
    let deep = format!(
        "listen: 127.0.0.1:8080\nshadow:\n  methods: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = parse(&deep).unwrap_err().0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, Some(3));
    assert!(
        e[0].reason.starts_with("nested deeper than 64 levels"),
        "{e:?}"
    );
    assert!(
        e[0].to_string()
            .starts_with("shadowdiff.yaml:3: nested deeper")
    );

    let huge = format!(
        "instance: \"{}\"\n",
        "x".repeat(crate::yaml::MAX_FILE_BYTES)
    );
    let e = parse(&huge).unwrap_err().0;
    assert!(e[0].reason.contains("larger than 1048576 bytes"), "{e:?}");

    let mut laughs = String::from("x0: &x0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let prev = format!("*x{}", i - 1);
        laughs.push_str(&format!(
            "x{i}: &x{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    let e = parse(&format!("{laughs}noise: {{}}\n")).unwrap_err().0;
    assert!(e[0].reason.contains("aliases expand"), "{e:?}");
    assert!(e[0].line.is_some(), "{e:?}");
}

/// Thousands of bad keys are reported quickly: the first 100 with their lines, then a note.
#[test]
fn a_file_of_many_bad_keys_lists_the_first_hundred() {
    let text: String = (0..5000).map(|i| format!("k{i}: 1\n")).collect();
    let e = parse(&text).unwrap_err().0;
    assert_eq!(e.len(), crate::yaml::MAX_PROBLEMS + 1);
    assert_eq!(e[0].line, Some(1));
    assert_eq!(e[99].line, Some(100));
    assert_eq!(
        e[100].reason,
        "more problems not listed: checking stopped after the first 100"
    );
}

/// Found by fuzzing: a tagged key (`!c- shadow:`) was read as `shadow` by serde but skipped by
/// the key-by-key checks, and its problem came out without a line.
#[test]
fn a_key_that_is_not_a_plain_string_is_a_problem_at_its_line() {
    let got = problems("listen: 127.0.0.1:1\n!c- shadow: {methods: [\"GE-T\"]}\n[a]: 1\n");
    expect(&got, 2, "a key must be a plain string, got tagged !c-");
    expect(&got, 3, "a key must be a plain string, got a list");
    assert_eq!(got.len(), 2, "{got:#?}");
}

/// `shadow.candidate` rewrites and `tls:` files: each problem at its own line, all at once.
#[test]
fn rewrite_rules_and_tls_files_are_refused_at_their_line() {
    let got = problems(
        r#"primary: http://p:1
candidate: https://c:2
secondary: http://s:3
shadow:
  candidate:
    path_prefix: v2
    rewrite:
      - {in: path, regex: "^/a/(\\d+)", replace: "/b/$1"}
      - {in: header, regex: x, replace: y}
      - in: query
        regex: "("
        replace: ""
tls:
  candidate:
    ca_file: /nonexistent/ca.pem
    client_cert: /nonexistent/c.pem
  secondary: {ca_file: /nonexistent/ca.pem}
"#,
    );
    expect(&got, 6, "shadow.candidate.path_prefix: ");
    expect(
        &got,
        9,
        "shadow.candidate.rewrite[1]: name: required with `in: header`",
    );
    expect(
        &got,
        10,
        "shadow.candidate.rewrite[2]: regex: regex parse error",
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    // TLS files are checked once every key parsed on its own.
    let got = problems(
        "primary: http://p:1\ncandidate: https://c:2\nsecondary: http://s:3\ntls:\n  candidate:\n    ca_file: /nonexistent/ca.pem\n    client_cert: /nonexistent/c.pem\n  secondary: {ca_file: /nonexistent/ca.pem}\n",
    );
    expect(&got, 6, "tls.candidate.ca_file: /nonexistent/ca.pem: ");
    expect(
        &got,
        5,
        "tls.candidate.client_key: required with client_cert",
    );
    expect(
        &got,
        8,
        "tls.secondary: the secondary is an http:// upstream",
    );
    assert_eq!(got.len(), 3, "{got:#?}");
}
