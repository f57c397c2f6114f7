#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The comparator against other JSON diff tools' test data, read from `../shared/testdata/
//! diff-suites/` (see its README.md; nothing of it is copied into this project). Where a peer
//! disagrees with DESIGN.md, DESIGN.md wins and the case is listed below with the reason.
//! Every suite asserts how many cases it checked and skipped, so it cannot pass vacuously.

use serde_json::Value;
use shadowdiff::compare::rules::RuleSet;
use shadowdiff::compare::{Comparator, CompareOptions, DiffKind, Difference, Verdict};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

fn suites() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    if root.is_dir() {
        Some(root.join("diff-suites"))
    } else {
        eprintln!("skipped: ../shared/testdata not present");
        None
    }
}

fn load(rel: &str) -> Vec<Value> {
    let Some(root) = suites() else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    match serde_json::from_str(&text).unwrap() {
        Value::Array(a) => a,
        other => panic!("{rel}: expected an array, got {other}"),
    }
}

fn comparator(yaml: Option<&str>) -> Comparator {
    let rules = match yaml {
        Some(y) => RuleSet::from_yaml(y).unwrap_or_else(|e| panic!("{e}\n{y}")),
        None => RuleSet::default(),
    };
    Comparator::new(Arc::new(rules), CompareOptions::default())
}

fn diff(cmp: &Comparator, a: &Value, b: &Value) -> Verdict {
    let (a, b) = (a.to_string(), b.to_string());
    cmp.compare_bodies(
        None,
        a.as_bytes(),
        b.as_bytes(),
        Some("application/json"),
        Some("application/json"),
    )
}

fn listing(ds: &[Difference]) -> String {
    ds.iter()
        .map(|d| format!("{} {}", d.kind.as_str(), d.path))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An independent equality oracle for the json-patch suite: structural, numbers by f64 value
/// (enough for the small numbers in the suite), object key order irrelevant.
fn oracle_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| oracle_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| oracle_eq(v, w)))
        }
        _ => a == b,
    }
}

/// json-patch-tests: diff(doc, expected) is empty exactly when the patch changes nothing.
/// Cases with `error` (the patch must fail, so there is no `expected` document) and `disabled`
/// cases are skipped and counted.
#[test]
fn json_patch_tests() {
    if suites().is_none() {
        return;
    }
    let cmp = comparator(None);
    let (mut checked, mut unchanged, mut skipped) = (0, 0, 0);
    for file in [
        "json-patch-tests/tests.json",
        "json-patch-tests/spec_tests.json",
    ] {
        for case in load(file) {
            let (Some(doc), Some(expected)) = (case.get("doc"), case.get("expected")) else {
                skipped += 1;
                continue;
            };
            if case.get("disabled").is_some_and(|d| d == true) || case.get("error").is_some() {
                skipped += 1;
                continue;
            }
            let v = diff(&cmp, doc, expected);
            let same = oracle_eq(doc, expected);
            unchanged += usize::from(same);
            assert_eq!(
                v.differences.is_empty(),
                same,
                "{file}: {}: {}",
                case.get("comment").unwrap_or(&Value::Null),
                listing(&v.differences)
            );
            checked += 1;
        }
    }
    eprintln!(
        "json-patch-tests: {checked} cases checked ({unchanged} unchanged), {skipped} skipped"
    );
    assert_eq!((checked, unchanged, skipped), (74, 17, 38));
}

/// Maps jd options onto our rules; `None` when an option has no equivalent.
fn jd_rules(options: Option<&Value>) -> Option<Option<String>> {
    let Some(opts) = options.and_then(Value::as_array) else {
        return Some(None);
    };
    let mut body = String::new();
    fn one(opt: &Value, path: &str, body: &mut String) -> Option<()> {
        match opt {
            Value::String(s) if s == "SET" || s == "MULTISET" => {
                body.push_str(&format!("    unordered: [{path:?}]\n"))
            }
            Value::String(s) if s == "DIFF_OFF" => {
                body.push_str(&format!("    ignore: [{path:?}]\n"))
            }
            Value::Object(o) if o.contains_key("precision") => {
                let p = o["precision"].as_f64()?;
                body.push_str(&format!("    tolerance: {{{path:?}: {{abs: {p}}}}}\n"));
            }
            Value::Object(o) if o.contains_key("keys") => match o["keys"].as_array()?.as_slice() {
                [Value::String(k)] => body.push_str(&format!("    keyed: {{{path:?}: {k:?}}}\n")),
                _ => return None, // composite keys: not expressible
            },
            _ => return None, // DIFF_ON (allow-lists) and anything else
        }
        Some(())
    }
    for opt in opts {
        body.push_str("  - match: \"*\"\n");
        match opt.get("@") {
            Some(Value::Array(segs)) => {
                let mut path = String::new();
                for s in segs {
                    path.push('/');
                    match s {
                        Value::String(k) => path.push_str(&k.replace('~', "~0").replace('/', "~1")),
                        other => path.push_str(&other.to_string()),
                    }
                }
                // A jd path option applies to the node and everything under it.
                let path = format!("{path}/**");
                for o in opt.get("^")?.as_array()? {
                    one(o, &path, &mut body)?;
                }
            }
            // A global option applies to every node.
            _ => one(opt, "/**", &mut body)?,
        }
    }
    Some(Some(format!("version: 1\nrules:\n{body}")))
}

/// jd spec: equal ⇔ empty `expected_output`, with jd options mapped onto rules.
#[test]
fn jd_spec() {
    if suites().is_none() {
        return;
    }
    // Where jd and DESIGN.md disagree (DESIGN.md wins):
    // - floating_point_precision: jd compares numbers as float64, so 0.1 == 0.10000000000000001;
    //   DESIGN.md compares numbers by exact value ("never through floating point"), and these are
    //   two different decimals.
    let design_differs = ["floating_point_precision"];
    let (mut checked, mut skipped, mut disagreed, mut accepted_checked) = (0, Vec::new(), 0, 0);
    for file in ["jd-spec/core.json", "jd-spec/options.json"] {
        for case in load(file) {
            let name = case["name"].as_str().unwrap().to_string();
            let (a, b) = (
                case["content_a"].as_str().unwrap(),
                case["content_b"].as_str().unwrap(),
            );
            // jd's empty input is "void", not a JSON document: nothing to compare it with.
            let (Ok(a), Ok(b)) = (
                serde_json::from_str::<Value>(a),
                serde_json::from_str::<Value>(b),
            ) else {
                skipped.push(name);
                continue;
            };
            // `accepted_lines` (instead of `expected_output`): jd's removed (`- v`) and added
            // (`+ v`) values, which must be our missing and added elements.
            let accepted: Option<Vec<String>> = case
                .get("accepted_lines")
                .and_then(Value::as_array)
                .map(|groups| {
                    let mut l: Vec<String> = groups
                        .iter()
                        .flat_map(|g| g.as_array().into_iter().flatten())
                        .filter_map(Value::as_str)
                        .filter(|l| l.starts_with("- ") || l.starts_with("+ "))
                        .map(str::to_string)
                        .collect();
                    l.sort();
                    l
                });
            let expected_output = match (
                case.get("expected_output").and_then(Value::as_str),
                &accepted,
            ) {
                (Some(e), _) => e,
                (None, Some(_)) => "accepted_lines",
                (None, None) => {
                    skipped.push(name);
                    continue;
                }
            };
            let Some(yaml) = jd_rules(case.get("options")) else {
                skipped.push(name);
                continue;
            };
            let v = diff(&comparator(yaml.as_deref()), &a, &b);
            let jd_equal = expected_output.is_empty();
            if design_differs.contains(&name.as_str()) {
                assert!(
                    jd_equal && !v.differences.is_empty(),
                    "{name}: expected to disagree with jd as documented"
                );
                disagreed += 1;
            } else {
                assert_eq!(
                    v.differences.is_empty(),
                    jd_equal,
                    "{file}: {name} (rules: {yaml:?}): {}",
                    listing(&v.differences)
                );
            }
            if let Some(want) = accepted {
                let mut got: Vec<String> = v
                    .differences
                    .iter()
                    .filter_map(|d| match d.kind {
                        DiffKind::Missing => Some(format!("- {}", d.primary)),
                        DiffKind::Added => Some(format!("+ {}", d.candidate)),
                        _ => None,
                    })
                    .collect();
                got.sort();
                assert_eq!(got, want, "{file}: {name}");
                accepted_checked += 1;
            }
            checked += 1;
        }
    }
    skipped.sort();
    eprintln!(
        "jd-spec: {checked} cases checked ({disagreed} documented disagreement), {} skipped: {skipped:?}",
        skipped.len()
    );
    assert_eq!(
        skipped,
        vec![
            "diff_on_allowlist",
            "empty_to_value",
            "multiple_keys",
            "value_to_empty"
        ]
    );
    assert_eq!((checked, disagreed, accepted_checked), (57, 1, 2));
}

/// A patch pointer as a field: array indices and the end-of-array `-` become `*`.
fn patch_field(path: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    path.split('/')
        .skip(1)
        .map(|s| {
            if s == "-" || s.parse::<usize>().is_ok() {
                "*"
            } else {
                s
            }
        })
        .fold(String::new(), |acc, s| acc + "/" + s)
}

/// zjsonpatch and java-json-tools diff cases: the set of fields their patch touches must be the
/// set of fields we report. Mapping: each patch op's `path`, with indices and `-` as `*`, against
/// our differences' `field`, leaving out `length` (a summary on the array itself that a patch has
/// no op for; the missing/added elements carry the same information).
#[test]
fn patch_paths_are_where_differences_are_reported() {
    if suites().is_none() {
        return;
    }
    let cmp = comparator(None);
    let mut checked = 0;
    for file in [
        "zjsonpatch/diff.json",
        "java-json-tools-json-patch/diff.json",
    ] {
        for case in load(file) {
            let msg = case.get("message").cloned().unwrap_or(Value::Null);
            let want: BTreeSet<String> = case["patch"]
                .as_array()
                .unwrap()
                .iter()
                .map(|op| patch_field(op["path"].as_str().unwrap()))
                .collect();
            let v = diff(&cmp, &case["first"], &case["second"]);
            let got: BTreeSet<String> = v
                .differences
                .iter()
                .filter(|d| d.kind != DiffKind::Length)
                .map(|d| d.field.clone())
                .collect();
            // java-json-tools emits `move`/`copy` for values that moved between arrays or keys;
            // we report a moved array element as one `order` difference on the array (DESIGN.md)
            // and a moved key as missing + added, so for those compare the parents instead.
            let moves = case["patch"]
                .as_array()
                .unwrap()
                .iter()
                .any(|op| matches!(op["op"].as_str(), Some("move" | "copy")));
            if moves {
                assert!(
                    !v.differences.is_empty(),
                    "{file}: {msg}: a patch that moves something must be a difference"
                );
            } else {
                assert_eq!(got, want, "{file}: {msg}: {}", listing(&v.differences));
            }
            checked += 1;
        }
    }
    eprintln!("patch paths: {checked} cases checked");
    assert_eq!(checked, 25);
}

/// java-json-tools unchanged.json: the listed pointers must not be reported (neither them nor
/// anything under them).
#[test]
fn unchanged_pointers_are_not_reported() {
    if suites().is_none() {
        return;
    }
    let cmp = comparator(None);
    let mut pointers = 0;
    let cases = load("java-json-tools-json-patch/unchanged.json");
    for case in &cases {
        let v = diff(&cmp, &case["first"], &case["second"]);
        for ptr in case["unchanged"].as_object().unwrap().keys() {
            pointers += 1;
            let hit = v.differences.iter().find(|d| {
                d.path == *ptr || d.path.starts_with(&format!("{ptr}/")) || ptr.is_empty()
            });
            assert!(
                hit.is_none(),
                "{ptr:?} is unchanged but reported: {}",
                listing(&v.differences)
            );
        }
        // And the documents that differ are reported as differing.
        assert_eq!(
            v.differences.is_empty(),
            case["first"] == case["second"],
            "{case}"
        );
    }
    eprintln!(
        "unchanged: {} cases, {pointers} pointers checked",
        cases.len()
    );
    assert_eq!((cases.len(), pointers), (7, 9));
}
