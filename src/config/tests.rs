#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

/// Ports, durations, sizes and the YAML limits (issue 12, "Validation").
mod validation;
use http::Method;

const DESIGN_EXAMPLE: &str = r#"
listen: 0.0.0.0:8080
primary: http://127.0.0.1:8081
candidate: http://candidate.example:8080
secondary: null                 # a second legacy instance: enables noise cancellation
admin: 127.0.0.1:9901           # admin API, metrics and UI; loopback by default
rules: diff-rules/              # a file or a folder of *.yaml
shadow:
  methods: [GET, HEAD, OPTIONS] # unsafe methods are never mirrored unless listed here or per route
  sample: 1.0                   # fraction of eligible requests mirrored
  timeout: 5s                   # candidate/secondary deadline
  max_in_flight: 1024           # shadow requests in flight; beyond: dropped, counted
  max_body_bytes: 4MiB          # larger bodies are passed through untouched and not compared
  strip_headers: []             # removed from shadow requests
  set_headers: {x-shadow-request: "1"}  # marks shadow copies (loop prevention)
sinks:
  file: {path: shadowdiff-events.jsonl, rotate_bytes: 100MiB, keep: 5}
  kafka: {brokers: "127.0.0.1:9092", topic: shadowdiff.events, stats_topic: shadowdiff.stats,
          spool_dir: /var/lib/shadowdiff/spool, options: {}}   # options: raw librdkafka settings
redact:
  headers: [authorization, cookie, set-cookie, proxy-authorization]  # values never published
  paths: []                     # JSON paths whose values are never published
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_yaml(Path::new("shadowdiff.yaml"), text)
}

#[test]
fn the_design_example_parses() {
    let c = parse(DESIGN_EXAMPLE).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.primary.unwrap().authority(), "127.0.0.1:8081");
    assert!(c.secondary.is_none());
    assert_eq!(c.shadow.timeout, Duration::from_secs(5));
    assert_eq!(c.shadow.max_body_bytes, 4 << 20);
    assert_eq!(c.sinks.file.unwrap().rotate_bytes, 100 << 20);
    assert_eq!(c.sinks.kafka.unwrap().topic, "shadowdiff.events");
}

#[test]
fn empty_file_means_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        c.shadow.methods,
        vec![Method::GET, Method::HEAD, Method::OPTIONS]
    );
    assert_eq!(c.shadow.circuit.failures, 5);
    assert_eq!(c.compare.workers, 1);
    assert_eq!(c.grouping.max_endpoints, 200);
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.gate.min_samples, 500);
    assert_eq!(c.noise.min_samples, 30);
}

#[test]
fn extensions_parse() {
    let c = parse(
        r#"
shadow:
  routes:
    - {match: "POST /search", mirror: true}
    - match: "GET /admin/**"
      mirror: false
  host: original
  sample: 25%
  circuit: {failures: 3, cooldown: 250ms}
compare: {workers: 2, queue: 16, max_decoded_bytes: 1MiB}
log: {format: json, level: debug}
stats: {window: 1h, bucket: 1m}
gate:
  max_divergence: 1%
  endpoints:
    "GET /x": {max_divergence: 0.05}
noise: {min_samples: 100, absolute: 2%, relative: 0.5}
"#,
    )
    .unwrap();
    let m = crate::stats::noise::NoiseModel::new(c.noise, 7);
    let n = m.config();
    assert_eq!(
        (n.min_samples, n.absolute, n.relative, m.max_endpoints()),
        (100, 0.02, 0.5, 7)
    );
    assert_eq!(c.shadow.routes.len(), 2);
    assert!(!c.shadow.routes[1].mirror);
    assert_eq!(c.shadow.host, HostPolicy::Original);
    assert_eq!(c.shadow.sample, 0.25);
    assert_eq!(c.shadow.circuit.cooldown, Duration::from_millis(250));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.gate.endpoints["GET /x"].max_divergence, Some(0.05));
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = "\
listen: nowhere
primary: ftp://x
shadow:
  timeout: 5 seconds
  sample: 2
  methods: [GET, 'P OST']
  bogus: 1
  circuit:
    failures: -1
sinks:
  file:
    keep: 0
colour: blue
";
    let errs = parse(text).unwrap_err().0;
    let got: Vec<(Option<usize>, String)> =
        errs.iter().map(|p| (p.line, p.reason.clone())).collect();
    let expect_line = |line: usize, needle: &str| {
        assert!(
            got.iter()
                .any(|(l, r)| *l == Some(line) && r.contains(needle)),
            "no problem at line {line} containing {needle:?} in {got:#?}"
        );
    };
    expect_line(1, "listen:");
    expect_line(2, "primary:");
    expect_line(4, "shadow.timeout: invalid duration \"5 seconds\"");
    expect_line(5, "shadow.sample: invalid rate");
    expect_line(6, "invalid method");
    expect_line(7, "shadow.bogus: unknown field");
    expect_line(9, "shadow.circuit.failures");
    expect_line(12, "sinks.file.keep: must be at least 1");
    expect_line(13, "colour: unknown field");
    assert_eq!(errs.len(), 9, "{got:#?}");
    let shown = errs
        .iter()
        .find(|p| p.reason.contains("timeout"))
        .unwrap()
        .to_string();
    assert!(
        shown.starts_with("shadowdiff.yaml:4: shadow.timeout:"),
        "{shown}"
    );
}

#[test]
fn syntax_errors_carry_a_line() {
    let errs = parse("listen: 1\nshadow:\n  timeout: [\n").unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line.is_some());
    assert!(errs[0].reason.contains("not valid YAML"));
}

#[test]
fn candidate_equal_to_primary_is_refused() {
    let errs = parse("primary: http://a:1\ncandidate: http://a:1/\n")
        .unwrap_err()
        .0;
    assert_eq!(errs[0].line, Some(2));
}

#[test]
fn upstream_urls() {
    assert!(Upstream::parse("http://127.0.0.1:80").is_ok());
    let tls = Upstream::parse("https://[::1]").unwrap();
    assert!(tls.is_tls() && tls.host() == "::1" && tls.port() == 443);
    assert_eq!(Upstream::parse("http://x").unwrap().port(), 80);
    assert!(Upstream::parse("ftp://x").is_err());
    assert!(Upstream::parse("127.0.0.1:80").is_err());
    assert!(Upstream::parse("http://x/prefix").is_err());
    let u = Upstream::parse("http://h:9").unwrap();
    assert_eq!(u.join("/a?b=1").unwrap().to_string(), "http://h:9/a?b=1");
}

#[test]
fn a_bad_noise_section_names_its_line() {
    let errs =
        parse("secondary: http://127.0.0.1:1\nnoise:\n  min_samples: many\n  absolute: 150%\n")
            .unwrap_err()
            .0;
    let lines: Vec<Option<usize>> = errs.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![Some(3), Some(4)], "{errs:?}");
}

#[test]
fn stats_interval_defaults_to_ten_seconds_and_refuses_too_short() {
    let c = parse("sinks:\n  kafka: {brokers: \"k:9092\"}\n").unwrap();
    assert_eq!(
        c.sinks.kafka.unwrap().stats_interval,
        Duration::from_secs(10)
    );
    let c = parse("sinks:\n  kafka:\n    stats_interval: 2s\n").unwrap();
    assert_eq!(
        c.sinks.kafka.unwrap().stats_interval,
        Duration::from_secs(2)
    );
    let e =
        parse("sinks:\n  kafka:\n    brokers: \"k:9092\"\n    stats_interval: 10ms\n").unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].line, Some(4), "{e}");
    assert!(e.0[0].reason.contains("stats_interval"), "{e}");
}

/// `sinks.kafka` is the Kafka sink's own struct: every knob it runs with can be written in the
/// file and arrives unchanged (the expected value names every field, so a new knob must be
/// added here too).
#[test]
fn every_kafka_knob_can_be_set_from_yaml() {
    let c = parse(
        r#"
sinks:
  kafka:
    brokers: "k1:9092,k2:9092"
    topic: t.events
    stats_topic: t.stats
    stats_interval: 2s
    spool_dir: /data/spool
    spool_max_bytes: 2GiB
    queue_capacity: 1024
    compression: gzip
    delivery_timeout: 45s
    max_buffered_messages: 5000
    max_buffered_kbytes: 2048
    options: {security.protocol: SASL_SSL, linger.ms: "20"}
"#,
    )
    .unwrap();
    let expected = KafkaConfig {
        brokers: "k1:9092,k2:9092".into(),
        topic: "t.events".into(),
        stats_topic: "t.stats".into(),
        stats_interval: Duration::from_secs(2),
        spool_dir: PathBuf::from("/data/spool"),
        spool_max_bytes: 2 << 30,
        queue_capacity: 1024,
        compression: "gzip".into(),
        delivery_timeout: Duration::from_secs(45),
        max_buffered_messages: 5000,
        max_buffered_kbytes: 2048,
        options: std::collections::BTreeMap::from([
            ("security.protocol".into(), "SASL_SSL".into()),
            ("linger.ms".into(), "20".into()),
        ]),
    };
    assert_eq!(c.sinks.kafka, Some(expected));
}

#[test]
fn an_unknown_kafka_key_is_reported_at_its_line() {
    let e = parse("sinks:\n  kafka:\n    brokers: \"k:9092\"\n    linger_ms: 5\n").unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].line, Some(4), "{e}");
    assert!(
        e.0[0]
            .reason
            .starts_with("sinks.kafka.linger_ms: unknown field"),
        "{e}"
    );
}

#[test]
fn bad_kafka_values_are_each_reported_at_their_line() {
    let e = parse(
        "sinks:\n  kafka:\n    spool_max_bytes: lots\n    queue_capacity: 0\n    delivery_timeout: 30\n",
    )
    .unwrap_err();
    let lines: Vec<Option<usize>> = e.0.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![Some(3), Some(4), Some(5)], "{e}");
}

/// `stats:`, `noise:` and `grouping:` are their modules' own structs now: each key is still
/// checked on its own with its line, the sizes that are not file settings stay unknown keys, and
/// the cross-field check keeps its message and line.
#[test]
fn component_sections_report_per_key_lines() {
    let text = "\
stats:
  window: soon
  max_fields: 3
noise:
  absolute: 200%
  max_endpoints: 9
grouping:
  max_endpoints: 0
";
    let errs = parse(text).unwrap_err().0;
    let got: Vec<(Option<usize>, String)> =
        errs.iter().map(|p| (p.line, p.reason.clone())).collect();
    for (line, needle) in [
        (2, "stats.window: invalid duration"),
        (3, "stats.max_fields: unknown field"),
        (5, "noise.absolute: invalid rate"),
        (6, "noise.max_endpoints: unknown field"),
        (8, "grouping.max_endpoints: must be at least 1"),
    ] {
        assert!(
            got.iter()
                .any(|(l, r)| *l == Some(line) && r.contains(needle)),
            "no problem at line {line} containing {needle:?} in {got:#?}"
        );
    }
    assert_eq!(errs.len(), 5, "{got:#?}");

    let errs = parse("log: {level: info}\nstats:\n  window: 1m\n  bucket: 5m\n")
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].line, errs[0].reason.as_str()),
        (Some(4), "stats.bucket: longer than stats.window")
    );

    // What the file does not set keeps the documented defaults, file settings or not.
    let c = parse("stats: {window: 1h}\nnoise: {relative: 50%}\n").unwrap();
    let d = crate::stats::StatsConfig::default();
    assert_eq!(
        (c.stats.window, c.stats.bucket, c.stats.recent_events),
        (Duration::from_secs(3600), d.bucket, d.recent_events)
    );
    assert_eq!((c.noise.relative, c.noise.min_samples), (0.5, 30));
    assert_eq!(c.noise.max_fields, 256);
}

#[test]
fn limits_default_as_design_and_refuse_zero_with_their_line() {
    let l = parse("").unwrap().limits;
    assert_eq!(l.header_read_timeout, Duration::from_secs(10));
    assert_eq!(l.idle_timeout, Duration::from_secs(60));
    assert_eq!(l.max_connections, 10_000);
    assert_eq!(l.max_header_bytes, 64 << 10);
    let l = parse("limits: {header_read_timeout: 1s, idle_timeout: 250ms, max_connections: 4, max_header_bytes: 8KiB}")
        .unwrap()
        .limits;
    assert_eq!(l.idle_timeout, Duration::from_millis(250));
    assert_eq!(l.max_header_bytes, 8 << 10);

    let text = "\
limits:
  header_read_timeout: 0s
  idle_timeout: 0ms
  max_connections: 0
  max_header_bytes: 4KiB
  max_bodies: 1
";
    let errs = parse(text).unwrap_err().0;
    let shown: Vec<String> = errs.iter().map(|p| p.to_string()).collect();
    for want in [
        "shadowdiff.yaml:2: limits.header_read_timeout: must be longer than 0",
        "shadowdiff.yaml:3: limits.idle_timeout: must be longer than 0",
        "shadowdiff.yaml:4: limits.max_connections: must be at least 1",
        "shadowdiff.yaml:5: limits.max_header_bytes: 4KiB is below the smallest head hyper reads, 8KiB",
        "shadowdiff.yaml:6: limits.max_bodies: unknown field",
    ] {
        assert!(
            shown.iter().any(|s| s.starts_with(want)),
            "no {want:?} in {shown:#?}"
        );
    }
    assert_eq!(errs.len(), 5, "{shown:#?}");
}

/// Relative `rules:` and `admin.token_file` resolve against the config file's folder, not the
/// working directory: the kustomize base's `rules: ../rules/` and `token_file:
/// ../admin-token/token` must work both in the repository and at the pod's mount paths
/// (deploy/README.md).
#[test]
fn relative_paths_resolve_against_the_config_files_folder() {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["config", "rules", "admin-token"] {
        std::fs::create_dir(tmp.path().join(d)).unwrap();
    }
    std::fs::write(
        tmp.path().join("rules/a.yaml"),
        "version: 1\nrules:\n  - match: \"*\"\n    ignore: [\"/ts\"]\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("admin-token/token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let file = tmp.path().join("config/shadowdiff.yaml");
    std::fs::write(
        &file,
        "rules: ../rules/\nadmin: {listen: 0.0.0.0:9901, token_file: ../admin-token/token}\n",
    )
    .unwrap();
    // The working directory is the crate's, where neither ../rules/ nor ../admin-token exist.
    let (cfg, rules) = Config::check_file(&file).unwrap();
    assert_eq!(cfg.rules, Some(tmp.path().join("config/../rules/")));
    assert_eq!((rules.files.len(), rules.rules.len()), (1, 1));
}

#[test]
fn the_record_section_parses_and_its_bad_keys_are_reported_with_lines() {
    let c = parse("record: {path: exchanges.jsonl, sample: 1%, rotate_bytes: 100MiB, keep: 5}\n")
        .unwrap();
    let r = c.record.unwrap();
    assert_eq!(r.sample, 0.01);
    assert_eq!(r.rotate_bytes, 100 << 20);
    assert!(r.redact, "redaction stays on unless set false explicitly");
    assert!(parse("").unwrap().record.is_none(), "off by default");
    let e = parse("record:\n  path: x.jsonl\n  sample: 2\n  keeep: 3\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(":3:") && text.contains("record.sample"),
        "{text}"
    );
    assert!(
        text.contains(":4:") && text.contains("record.keeep"),
        "{text}"
    );
}

#[test]
fn an_upstream_takes_a_protocol_in_its_long_form() {
    let cfg = parse(
        "primary: {url: \"http://127.0.0.1:81\", protocol: h2}\ncandidate: http://127.0.0.1:82\n",
    )
    .unwrap();
    let (p, c) = (cfg.primary.unwrap(), cfg.candidate.unwrap());
    assert_eq!(
        (p.protocol(), p.authority()),
        (Protocol::H2, "127.0.0.1:81")
    );
    assert_eq!(c.protocol(), Protocol::Auto);
    assert_eq!(c.cleartext_wire(), crate::ingest::config::Wire::Http1);
    let errs = parse(
        "primary: {url: \"http://127.0.0.1:81\", protocol: h3}\ncandidate: {url: \"http://c:1\", proto: h2}\n",
    )
    .unwrap_err()
    .0;
    let text: Vec<String> = errs
        .iter()
        .map(|p| format!("{:?} {}", p.line, p.reason))
        .collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("Some(1)") && t.contains("h3")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("Some(2)") && t.contains("proto")),
        "{text:#?}"
    );
    // h2 over TLS needs ALPN, not built yet: refused at its line rather than spoken wrongly.
    let errs = parse(
        "primary: http://127.0.0.1:81\ncandidate: {url: \"https://127.0.0.1:82\", protocol: h2}\n",
    )
    .unwrap_err()
    .0;
    assert!(
        errs.iter()
            .any(|p| p.line == Some(2) && p.reason.contains("h2 over https")),
        "{errs:#?}"
    );
}

#[test]
fn grpc_descriptors_are_read_at_load_and_a_bad_file_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shadowdiff.yaml");
    std::fs::write(&path, "grpc: {descriptors: missing.pb}\n").unwrap();
    let errs = Config::load(&path).unwrap_err().0;
    assert!(
        errs.iter()
            .any(|p| p.line == Some(1) && p.reason.contains("grpc.descriptors: cannot read")),
        "{errs:#?}"
    );
    std::fs::write(dir.path().join("junk.pb"), b"\xff\xff\xff").unwrap();
    std::fs::write(&path, "grpc:\n  descriptors: junk.pb\n").unwrap();
    let errs = Config::load(&path).unwrap_err().0;
    assert!(
        errs.iter()
            .any(|p| p.line == Some(2) && p.reason.contains("not a protobuf FileDescriptorSet")),
        "{errs:#?}"
    );
    std::fs::write(&path, "grpc: {descriptors: x.pb, reflect: true}\n").unwrap();
    assert!(Config::load(&path).is_err());
}
