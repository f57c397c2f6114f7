#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Rules loading: every problem at once, each with file, line and rule label.

use super::*;

fn problems(text: &str) -> Vec<Problem> {
    match RuleSet::from_sources(&[(Path::new("rules/orders.yaml"), text)]) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(RuleErrors(p)) => p,
    }
}

/// (line, rule label, fragment of the reason) for each problem, printed readably on failure.
#[track_caller]
fn assert_problems(actual: &[Problem], expected: &[(Option<usize>, Option<&str>, &str)]) {
    let ok = actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, (line, rule, reason))| {
                a.line == *line && a.rule.as_deref() == *rule && a.reason.contains(reason)
            });
    if !ok {
        let mut msg = String::from("rule problems differ\nexpected:\n");
        for (l, r, why) in expected {
            msg.push_str(&format!("  line {l:?} rule {r:?}: …{why}…\n"));
        }
        msg.push_str("actual:\n");
        for a in actual {
            msg.push_str(&format!(
                "  line {:?} rule {:?}: {}\n",
                a.line, a.rule, a.reason
            ));
        }
        panic!("{msg}");
    }
}

#[test]
fn a_good_file_compiles_every_key() {
    let set = RuleSet::from_yaml(
        r#"version: 1
endpoints:
  - "GET /orders/{id}"
rules:
  - match: "*"
    ignore_headers: [Date, server]
    ignore: ["/meta/generated_at", "/**/trace_id"]
  - match: "GET /orders/{id}"
    unordered: ["/tags"]
    keyed: {"/items": "sku"}
    tolerance: {"/total": {abs: 0.01}, "/items/*/price": {rel: 0.001}}
    rewrite: [{path: "/links/self", regex: "^https?://[^/]+", replace: ""}]
    coerce: ["/id"]
    ignore_added: true
"#,
    )
    .unwrap();
    assert_eq!(set.endpoints.len(), 1);
    assert_eq!(set.rules.len(), 2);
    let names: Vec<&str> = set.rules[0]
        .ignore_headers
        .iter()
        .map(|h| h.as_str())
        .collect();
    assert_eq!(names, ["date", "server"]);
    assert_eq!(set.rules[1].paths.len(), 6);
    assert!(set.rules[1].ignore_added && !set.rules[0].ignore_added);
    let any = set.effective("POST", "/x", None);
    assert_eq!(any.patterns.len(), 2);
    assert!(!any.ignore_added);
    let orders = set.effective("GET", "/orders/1", None);
    assert_eq!(orders.patterns.len(), 8);
    assert!(orders.ignore_added);
    let by_template = set.effective("", "", Some("GET /orders/{id}"));
    assert_eq!(by_template.patterns.len(), 8);
}

#[test]
fn several_bad_rules_are_all_reported_with_lines() {
    let text = r#"version: 1
rules:
  - match: "*"
    ignore: ["no-slash"]
  - match: "GET /ok/{id}"
    colour: red
  - match: "*"
    rewrite: [{path: "/a", regex: "([unclosed"}]
  - match: "*"
    tolerance: {"/t": {abs: -1}}
  - match: "GET orders"
    coerce: ["/id"]
  - match: "*"
    keyed: {"/items": ""}
  - match: "*"
    unordered: ["/bad~2escape"]
  - match: "*"
    ignore_added: "yes"
  - match: "*"
    tolerance: {"/u": {within: 1}}
"#;
    let p = problems(text);
    assert!(p.iter().all(|x| x.file == Path::new("rules/orders.yaml")));
    assert_problems(
        &p,
        &[
            (
                Some(4),
                Some(r#"rule 1 ("*")"#),
                "must be empty or start with '/'",
            ),
            (
                Some(6),
                Some(r#"rule 2 ("GET /ok/{id}")"#),
                "unknown key `colour`",
            ),
            (Some(8), Some(r#"rule 3 ("*")"#), "bad regex"),
            (Some(10), Some(r#"rule 4 ("*")"#), "non-negative number"),
            (
                Some(11),
                Some(r#"rule 5 ("GET orders")"#),
                "match: endpoint pattern",
            ),
            (Some(14), Some(r#"rule 6 ("*")"#), "keyed"),
            (Some(16), Some(r#"rule 7 ("*")"#), "invalid escape"),
            (
                Some(18),
                Some(r#"rule 8 ("*")"#),
                "ignore_added: expected true or false",
            ),
            (Some(20), Some(r#"rule 9 ("*")"#), "unknown key \"within\""),
        ],
    );
    // The Display form carries file:line: rule: reason.
    assert_eq!(
        p[1].to_string(),
        "rules/orders.yaml:6: rule 2 (\"GET /ok/{id}\"): unknown key `colour` (expected one of match, ignore_headers, ignore, unordered, keyed, tolerance, rewrite, coerce, ignore_added)"
    );
}

#[test]
fn tolerance_needs_abs_or_rel() {
    let p = problems("version: 1\nrules:\n  - match: \"*\"\n    tolerance: {\"/t\": {}}\n");
    assert_problems(
        &p,
        &[(Some(4), Some(r#"rule 1 ("*")"#), "needs abs or rel")],
    );
}

#[test]
fn missing_match_and_top_level_problems() {
    let p = problems(
        "version: 2\ncolour: 1\nendpoints:\n  - \"orders\"\nrules:\n  - ignore: [\"/a\"]\n",
    );
    assert_problems(
        &p,
        &[
            (Some(2), None, "unknown key `colour`"),
            (Some(1), None, "unsupported version 2"),
            (Some(4), None, "endpoints: endpoint pattern \"orders\""),
            (Some(6), Some(r#"rule 1 ("?")"#), "missing `match`"),
        ],
    );
    let p = problems("rules: []\n");
    assert_problems(&p, &[(Some(1), None, "missing `version: 1`")]);
}

#[test]
fn yaml_syntax_error_has_its_line() {
    let p =
        problems("version: 1\nrules:\n  - match: \"*\"\n    ignore: [\"/a\"\n  - match: \"*\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].reason.starts_with("not valid YAML"), "{}", p[0].reason);
    // The unclosed flow sequence opened on line 4 is detected on line 5.
    assert_eq!(p[0].line, Some(5), "{}", p[0]);
}

#[test]
fn problems_from_several_files_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "version: 1\nrules:\n  - match: \"*\"\n    ignore: [\"x\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "version: 1\nrules:\n  - match: \"*\"\n    bogus: 1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not rules").unwrap();
    let RuleErrors(p) = RuleSet::load(dir.path()).unwrap_err();
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        (p[0].file.file_name().unwrap().to_str(), p[0].line),
        (Some("a.yaml"), Some(4))
    );
    assert_eq!(
        (p[1].file.file_name().unwrap().to_str(), p[1].line),
        (Some("b.yml"), Some(4))
    );
    // A folder of good files loads in name order.
    std::fs::write(
        dir.path().join("a.yaml"),
        "version: 1\nrules:\n  - match: \"*\"\n    ignore: [\"/x\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "version: 1\nrules:\n  - match: \"GET /y\"\n    coerce: [\"/y\"]\n",
    )
    .unwrap();
    let set = RuleSet::load(dir.path()).unwrap();
    assert_eq!(set.rules.len(), 2);
    assert_eq!(set.rules[1].scope.as_str(), "GET /y");
}

#[test]
fn shipped_default_rules_load() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("diff-rules");
    let set = RuleSet::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        set.effective("GET", "/", None)
            .ignore_headers
            .iter()
            .any(|h| h.matches("date"))
    );
}

#[test]
fn an_unknown_key_in_a_rule_is_reported_at_its_line() {
    let p = problems(
        "version: 1\nrules:\n  - match: \"GET /a\"\n    ignore: [\"/x\"]\n\n    ignroe: [\"/y\"]\n",
    );
    assert_problems(
        &p,
        &[(
            Some(6),
            Some(r#"rule 1 ("GET /a")"#),
            "unknown key `ignroe` (expected one of match,",
        )],
    );
}

#[test]
fn two_bad_rules_in_one_file_are_both_reported() {
    let p = problems(
        "version: 1\nrules:\n  - match: \"*\"\n    colour: red\n  - match: \"*\"\n    ignore: \"/not-a-list\"\n",
    );
    assert_problems(
        &p,
        &[
            (Some(4), Some(r#"rule 1 ("*")"#), "unknown key `colour`"),
            (
                Some(6),
                Some(r#"rule 2 ("*")"#),
                "ignore: invalid type: string \"/not-a-list\", expected a sequence",
            ),
        ],
    );
}

#[test]
fn every_problem_of_one_rule_is_reported_not_just_the_first() {
    // An unknown key, a value of the wrong type and a bad pattern, all in one rule: each key is
    // checked on its own, and the keys that pass are still compiled and checked.
    let p = problems(
        "version: 1\nrules:\n  - match: \"*\"\n    colour: red\n    ignore_added: 2\n    coerce: [\"x\"]\n",
    );
    assert_problems(
        &p,
        &[
            (Some(4), Some(r#"rule 1 ("*")"#), "unknown key `colour`"),
            (
                Some(5),
                Some(r#"rule 1 ("*")"#),
                "ignore_added: expected true or false, got 2",
            ),
            (
                Some(6),
                Some(r#"rule 1 ("*")"#),
                "must be empty or start with '/'",
            ),
        ],
    );
    // A `match` of the wrong type is one problem, not also a missing `match`.
    let p = problems("version: 1\nrules:\n  - match: [1]\n");
    assert_problems(
        &p,
        &[(Some(3), Some(r#"rule 1 ("?")"#), "match: invalid type")],
    );
    // Written but null is as good as missing, for `match` and `version` alike.
    let p = problems("version:\nrules:\n  - match: null\n    ignore: [\"/a\"]\n");
    assert_problems(
        &p,
        &[
            (Some(1), None, "missing `version: 1`"),
            (Some(3), Some(r#"rule 1 ("?")"#), "missing `match`"),
        ],
    );
}

#[test]
fn the_config_reports_rule_problems_through_the_same_loader() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "version: 1\nrules:\n  - match: \"*\"\n    bogus: 1\n",
    )
    .unwrap();
    let cfg = crate::config::Config {
        rules: Some(rules.clone()),
        ..Default::default()
    };
    let from_config = cfg.load_rules().unwrap_err().0;
    let RuleErrors(direct) = RuleSet::load(&rules).unwrap_err();
    assert_eq!(from_config, direct);
    assert_eq!(
        from_config[0].to_string(),
        format!(
            "{}:4: rule 1 (\"*\"): unknown key `bogus` (expected one of match, ignore_headers, ignore, unordered, keyed, tolerance, rewrite, coerce, ignore_added)",
            rules.display()
        )
    );
    // A rules path that does not exist is one problem naming it, however rules are loaded.
    let absent = dir.path().join("absent");
    let RuleErrors(p) = RuleSet::load(&absent).unwrap_err();
    assert_eq!(
        p,
        vec![Problem::new(&absent, None, "rules: no such file or folder")]
    );
}

/// Thousands of bad entries are reported quickly: the first 100, then a note; the rules that
/// come after are not compiled (the file is refused anyway).
#[test]
fn a_rules_file_of_many_problems_lists_the_first_hundred() {
    let text: String = std::iter::once("version: 1\nendpoints:\n".to_string())
        .chain((0..5000).map(|i| format!("  - \"BAD{i}\"\n")))
        .chain(std::iter::once("rules:\n".to_string()))
        .chain((0..5000).map(|i| format!("  - {{match: \"*\", bogus{i}: 1}}\n")))
        .collect();
    let e = RuleSet::from_yaml(&text).unwrap_err().0;
    assert_eq!(e.len(), crate::yaml::MAX_PROBLEMS + 1, "{e:?}");
    assert_eq!(e[0].line, Some(3));
    assert_eq!(
        e[100].reason,
        "more problems not listed: checking stopped after the first 100"
    );
}
