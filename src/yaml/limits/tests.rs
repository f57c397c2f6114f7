use super::*;
use serde_yaml_ng::Value as Yaml;

fn deep_flow(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

#[test]
fn every_yaml_file_of_the_project_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in [
        "deploy",
        "diff-rules",
        "sample-traffic",
        "sample-traffic/golden",
    ] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    assert_eq!(depth(&text), Ok(()), "{}", p.display());
                    n += 1;
                }
            }
        }
    }
    assert!(n >= 5, "only {n} files");
}

#[test]
fn flow_nesting_is_counted_to_the_limit() {
    // `a` is one block level; the brackets add one each.
    let ok = format!("a: {}\n", deep_flow(MAX_DEPTH - 1));
    assert_eq!(depth(&ok), Ok(()));
    let deep = format!("x: 1\ny: 2\na: {}\n", deep_flow(MAX_DEPTH));
    assert_eq!(depth(&deep), Err((3, MAX_DEPTH + 1)));
    // Over several lines, and in mappings.
    let deep = format!("a:\n{}\n", "  {b: [\n".repeat(MAX_DEPTH));
    assert!(
        matches!(depth(&deep), Err((l, _)) if l > 1),
        "{:?}",
        depth(&deep)
    );
}

#[test]
fn block_nesting_is_counted() {
    let mut text = String::new();
    for i in 0..=MAX_DEPTH {
        text.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
    }
    assert_eq!(depth(&text), Err((MAX_DEPTH + 1, MAX_DEPTH + 1)));
    // Compact nested sequences on one line.
    let text = format!("{}x\n", "- ".repeat(MAX_DEPTH + 1));
    assert!(depth(&text).is_err());
    let text = format!("{}x\n", "- ".repeat(MAX_DEPTH - 1));
    assert_eq!(depth(&text), Ok(()));
}

/// Where libyaml reads a bracket as text, so does the scan: no false alarm on a regex, a
/// quoted string, a comment, a block scalar or a multi-line plain scalar.
#[test]
fn brackets_in_text_are_not_nesting() {
    let b = "[".repeat(200);
    for text in [
        format!("regex: ^a{b}\n"),
        format!("regex: \"{b}\"\n"),
        format!("regex: '{b}'\n"),
        format!("a: 1 # {b}\n"),
        format!("# {b}\nb: 1\n"),
        format!("a: |\n  {b}\n  {b}\nb: 1\n"),
        format!("- a: >-\n    {b}\n  c: 1\n"),
        format!("a: text\n  {b}\n  more\nb: 1\n"),
        format!("a: \"multi\n  {b}\n  line\"\nb: 1\n"),
        format!("a: [x{b}y]\n")
            .replace('[', "x")
            .replacen('x', "[", 1),
        format!("a: \"{}\"\n", "\\\"[".repeat(100)),
    ] {
        assert_eq!(depth(&text), Ok(()), "{text}");
        serde_yaml_ng::from_str::<Yaml>(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    }
}

/// Deep nesting that libyaml parses as structure is counted, however it is hidden: after a
/// scalar that ends where libyaml ends it, after line breaks libyaml knows (`\r`, NEL, LS, PS),
/// after a block scalar that has ended, in a flow scalar that continues over lines.
#[test]
fn hidden_nesting_is_found() {
    let d = deep_flow(100);
    for text in [
        format!("a: x\nb: {d}\n"),
        format!("- a\n- {d}\n"),
        format!("a: |\n  text\nb: {d}\n"),
        format!("a: |\n    text\n  b: 1\nc: {d}\n"),
        format!("- a: |\n    t\n  b: {d}\n"),
        format!("a: 'it''s'\nb: {d}\n"),
        format!("a: \"x\\\"\"\nb: {d}\n"),
        format!("a: 1 # c\rb: {d}\r"),
        format!("a: 1 # c\u{2028}b: {d}\n"),
        format!("a: 1 # c\u{85}b: {d}\n"),
        format!("a: [b, # c\n {d}]\n"),
        format!("a: [x\n \"y, {d}]\n"),
        format!("a: [x #y\n , {d}]\n"),
        format!("key:\n  value\n \"\nb: {d}\n"),
        format!("a: &x {d}\n"),
        format!("a: !!seq {d}\n"),
        format!("{d}: 1\n"),
        format!("--- {d}\n"),
        format!("a:\t{d}\n"),
        format!("\u{feff}a: {d}\n"),
    ] {
        assert!(depth(&text).is_err(), "not refused: {text:?}");
        // Not vacuous: the parser sees the nesting too (it stops at 128 levels, or at what
        // it refuses first), so what the scan refused was structure.
        if let Ok(v) = serde_yaml_ng::from_str::<Yaml>(&text.replace(&d, &deep_flow(20))) {
            assert!(crate::yaml::nesting(&v) >= 20, "{text:?}");
        }
    }
}

/// The count agrees with libyaml's on ordinary documents: never less than half the depth of
/// what the parser builds (an indentless sequence under a key shares its level), never more
/// than that depth.
#[test]
fn the_count_tracks_the_parsed_depth() {
    for text in [
        "a: 1\n",
        "a:\n  b:\n    c: [1, {d: [2]}]\n",
        "a:\n- b:\n  - c:\n    - d\n",
        "- - - x\n",
        "rules:\n  - match: \"*\"\n    tolerance: {\"/t\": {abs: 0.01}}\n",
        "{a: {b: {c: {d: 1}}}}\n",
        "? [a, [b]]\n: c\n",
    ] {
        let v: Yaml = serde_yaml_ng::from_str(text).unwrap();
        let real = crate::yaml::nesting(&v);
        assert!(depth_within(text, real).is_ok(), "{text}");
        assert!(depth_within(text, real.div_ceil(2) - 1).is_err(), "{text}");
    }
}

#[test]
fn an_oversized_text_is_refused_without_parsing() {
    let text = format!("a: \"{}\"\n", "x".repeat(MAX_FILE_BYTES));
    let p = check(Path::new("big.yaml"), &text).unwrap_err();
    assert!(p.reason.contains("larger than"), "{p}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.yaml");
    std::fs::write(&f, &text).unwrap();
    let p = read(&f).unwrap_err();
    assert!(p.reason.contains("larger than"), "{p}");
    std::fs::write(&f, b"a: 1\nb: \xff\n").unwrap();
    assert_eq!(read(&f).unwrap_err().line, Some(2));
}

/// The "billion laughs": nine levels of nine aliases would be 387 million values.
#[test]
fn alias_expansion_is_bounded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            std::iter::repeat_n(p.as_str(), 9)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let started = std::time::Instant::now();
    let p = expansion(Path::new("laughs.yaml"), &text).unwrap_err();
    assert!(p.reason.contains("aliases expand"), "{p}");
    assert!(p.line.is_some(), "{p}");
    // The walk stopped at the budget: far below the expansion.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Quadratic rather than exponential: one large anchor, many aliases.
    let text = format!(
        "a: &a [{}]\nb: [{}]\n",
        vec!["1"; 2000].join(","),
        vec!["*a"; 2000].join(",")
    );
    assert!(expansion(Path::new("q.yaml"), &text).is_err());
    // A few aliases that repeat a value are fine.
    let text = "base: &b [date, server]\nrules:\n  - ignore_headers: *b\n  - ignore_headers: *b\n";
    assert_eq!(expansion(Path::new("ok.yaml"), text), Ok(()));
    // A syntax error is left to the parser, which words it.
    assert_eq!(expansion(Path::new("bad.yaml"), "a: &x [\n"), Ok(()));
}
