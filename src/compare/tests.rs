#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Unit tests of the comparator: every rule key (each with a test that fails if the key did
//! nothing) and the edge cases DESIGN.md fixes ("Comparison semantics", "Difference kinds and
//! verdicts").

use super::*;
use crate::exchange::{Request, Response, UpstreamError};
use bytes::Bytes;
use http::HeaderMap;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

/// Numbers at the edges: huge exponents, tolerances beyond f64 (issue 12, "Validation").
mod numbers;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn comparator(yaml: &str) -> Comparator {
    let rules = if yaml.is_empty() {
        RuleSet::default()
    } else {
        RuleSet::from_yaml(yaml).unwrap_or_else(|e| panic!("bad rules: {e}"))
    };
    Comparator::new(Arc::new(rules), CompareOptions::default())
}

fn rules(body: &str) -> String {
    format!("version: 1\nrules:\n{body}")
}

/// Compares two JSON texts under `yaml` rules for `endpoint`.
fn diff_json(yaml: &str, endpoint: Option<&str>, p: &str, c: &str) -> Verdict {
    comparator(yaml).compare_bodies(
        endpoint,
        p.as_bytes(),
        c.as_bytes(),
        Some("application/json"),
        Some("application/json"),
    )
}

type Exp = (&'static str, &'static str, DiffKind, Value, Value);

fn row(d: &Difference) -> String {
    format!(
        "{:<8} path={:<20} field={:<20} primary={} candidate={}",
        d.kind.as_str(),
        format!("{:?}", d.path),
        format!("{:?}", d.field),
        d.primary,
        d.candidate
    )
}

/// Asserts the differences are exactly `expected` (in any order), printing a readable diff of
/// expected against actual when they are not.
#[track_caller]
fn assert_diffs(actual: &[Difference], expected: &[Exp]) {
    let mut exp: Vec<String> = expected
        .iter()
        .map(|(p, f, k, pv, cv)| {
            row(&Difference {
                path: (*p).into(),
                field: (*f).into(),
                kind: *k,
                primary: pv.clone(),
                candidate: cv.clone(),
                noise: false,
                detail: None,
            })
        })
        .collect();
    let mut act: Vec<String> = actual.iter().map(row).collect();
    exp.sort();
    act.sort();
    if exp != act {
        let mut msg = String::from("differences do not match (- expected only, + actual only):\n");
        for e in &exp {
            if !act.contains(e) {
                msg.push_str(&format!("  - {e}\n"));
            }
        }
        for a in &act {
            if !exp.contains(a) {
                msg.push_str(&format!("  + {a}\n"));
            }
        }
        msg.push_str("actual, in order:\n");
        for a in actual.iter().map(row) {
            msg.push_str(&format!("    {a}\n"));
        }
        panic!("{msg}");
    }
}

#[track_caller]
fn assert_match(v: &Verdict) {
    assert_diffs(&v.differences, &[]);
    assert_eq!(v.kind, VerdictKind::Match, "notes: {:?}", v.notes);
}

fn null() -> Value {
    Value::Null
}

fn resp(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Response {
        status,
        headers: h,
        body: body.into(),
        latency: Duration::ZERO,
    }
}

fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        ..Default::default()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Built-in semantics
// ---------------------------------------------------------------------------------------------

#[test]
fn key_order_never_matters() {
    assert_match(&diff_json(
        "",
        None,
        r#"{"a":1,"b":{"x":1,"y":2}}"#,
        r#"{"b":{"y":2,"x":1},"a":1}"#,
    ));
}

#[test]
fn numbers_compare_by_value() {
    assert_match(&diff_json(
        "",
        None,
        r#"{"a":1,"b":-0.0,"c":100}"#,
        r#"{"a":1.0,"b":0,"c":1e2}"#,
    ));
    let v = diff_json("", None, r#"{"a":1}"#, r#"{"a":1.5}"#);
    assert_diffs(
        &v.differences,
        &[("/a", "/a", DiffKind::Value, json!(1), json!(1.5))],
    );
}

#[test]
fn big_integers_are_exact() {
    let v = diff_json(
        "",
        None,
        r#"{"id":9007199254740993}"#,
        r#"{"id":9007199254740992}"#,
    );
    assert_eq!(v.kind, VerdictKind::Mismatch);
    assert_eq!(v.differences.len(), 1);
    assert_eq!(v.differences[0].path, "/id");
    // The published values keep their exact digits.
    assert_eq!(v.differences[0].primary.to_string(), "9007199254740993");
    assert_eq!(v.differences[0].candidate.to_string(), "9007199254740992");
    assert_match(&diff_json(
        "",
        None,
        r#"{"id":123456789012345678901234567890}"#,
        r#"{"id":123456789012345678901234567890.0}"#,
    ));
}

#[test]
fn null_versus_absent_is_missing_or_added() {
    let v = diff_json("", None, r#"{"a":null}"#, r#"{}"#);
    assert_diffs(
        &v.differences,
        &[("/a", "/a", DiffKind::Missing, null(), null())],
    );
    let v = diff_json("", None, r#"{}"#, r#"{"a":null}"#);
    assert_diffs(
        &v.differences,
        &[("/a", "/a", DiffKind::Added, null(), null())],
    );
    // Present on both sides with different types: `type`.
    let v = diff_json("", None, r#"{"a":null}"#, r#"{"a":0}"#);
    assert_diffs(
        &v.differences,
        &[("/a", "/a", DiffKind::Type, null(), json!(0))],
    );
}

#[test]
fn arrays_by_index_prefix_then_extras_and_one_length() {
    let v = diff_json("", None, r#"{"a":[1,2,3,4]}"#, r#"{"a":[1,9]}"#);
    assert_diffs(
        &v.differences,
        &[
            ("/a/1", "/a/*", DiffKind::Value, json!(2), json!(9)),
            ("/a/2", "/a/*", DiffKind::Missing, json!(3), null()),
            ("/a/3", "/a/*", DiffKind::Missing, json!(4), null()),
            ("/a", "/a", DiffKind::Length, json!(4), json!(2)),
        ],
    );
    let v = diff_json("", None, r#"[1]"#, r#"[1,2]"#);
    assert_diffs(
        &v.differences,
        &[
            ("/1", "/*", DiffKind::Added, null(), json!(2)),
            ("", "", DiffKind::Length, json!(1), json!(2)),
        ],
    );
}

#[test]
fn same_multiset_in_another_order_is_one_order_difference() {
    let v = diff_json(
        "",
        None,
        r#"{"tags":["a","b","c"]}"#,
        r#"{"tags":["c","a","b"]}"#,
    );
    assert_diffs(
        &v.differences,
        &[(
            "/tags",
            "/tags",
            DiffKind::Order,
            json!(["a", "b", "c"]),
            json!(["c", "a", "b"]),
        )],
    );
    // Not the same multiset: element differences, not `order`.
    let v = diff_json("", None, r#"[1,1,2]"#, r#"[2,1,2]"#);
    assert!(
        v.differences.iter().all(|d| d.kind != DiffKind::Order),
        "{:?}",
        v.differences
    );
    // Every element of one side occurs in the other, but not as often: not `order` either.
    let v = diff_json("", None, r#"[1,1,2]"#, r#"[2,2,1]"#);
    assert!(
        v.differences.iter().all(|d| d.kind != DiffKind::Order),
        "{:?}",
        v.differences
    );
}

#[test]
fn keys_with_slash_and_tilde_are_escaped_in_path_and_field() {
    let v = diff_json("", None, r#"{"a/b":[{"m~n":1}]}"#, r#"{"a/b":[{"m~n":2}]}"#);
    assert_diffs(
        &v.differences,
        &[(
            "/a~1b/0/m~0n",
            "/a~1b/*/m~0n",
            DiffKind::Value,
            json!(1),
            json!(2),
        )],
    );
}

#[test]
fn deep_arrays_field_uses_star_for_every_index() {
    let v = diff_json("", None, r#"{"m":[[0,{"k":1}]]}"#, r#"{"m":[[0,{"k":2}]]}"#);
    assert_diffs(
        &v.differences,
        &[("/m/0/1/k", "/m/*/*/k", DiffKind::Value, json!(1), json!(2))],
    );
}

#[test]
fn hundred_thousand_level_nesting_never_overflows_the_stack() {
    // Run on a thread with an ordinary 2 MiB stack: a recursive walk or parser without a depth
    // limit would overflow here and abort the test binary.
    let h = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let n = 100_000;
            let arrays_p = format!("{}{}", "[".repeat(n), "]".repeat(n));
            let arrays_c = format!("{}1{}", "[".repeat(n), "]".repeat(n));
            let objs_p = format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
            let objs_c = format!("{}2{}", r#"{"a":"#.repeat(n), "}".repeat(n));
            let cmp = comparator("");
            let mut kinds = Vec::new();
            for (p, c) in [
                (&arrays_p, &arrays_c),
                (&objs_p, &objs_c),
                (&arrays_p, &arrays_p),
            ] {
                let v = cmp.compare_bodies(
                    None,
                    p.as_bytes(),
                    c.as_bytes(),
                    Some("application/json"),
                    Some("application/json"),
                );
                kinds.push(v.kind);
                let r = cmp.compare_responses(
                    &get("/deep"),
                    None,
                    &resp(200, &[], p.clone()),
                    &resp(200, &[], c.clone()),
                );
                kinds.push(r.kind);
            }
            kinds
        })
        .unwrap();
    let kinds = h
        .join()
        .expect("comparison of deep input panicked (stack overflow?)");
    // Differing inputs must not be reported equal, identical ones must be.
    assert_eq!(
        kinds,
        vec![
            VerdictKind::Mismatch,
            VerdictKind::Mismatch,
            VerdictKind::Mismatch,
            VerdictKind::Mismatch,
            VerdictKind::Match,
            VerdictKind::Match
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Rule keys, each with a control showing the difference exists without the key
// ---------------------------------------------------------------------------------------------

#[test]
fn rule_ignore() {
    let (p, c) = (
        r#"{"meta":{"generated_at":"t1"},"x":{"trace_id":"a"},"trace_id":"r","v":1}"#,
        r#"{"meta":{"generated_at":"t2"},"x":{"trace_id":"b"},"trace_id":"s","v":1}"#,
    );
    assert_eq!(diff_json("", None, p, c).differences.len(), 3);
    let y = rules("  - match: \"*\"\n    ignore: [\"/meta/generated_at\", \"/**/trace_id\"]\n");
    assert_match(&diff_json(&y, None, p, c));
    // Ignored keys present on one side only are not missing/added either.
    assert_match(&diff_json(&y, None, r#"{"trace_id":"r"}"#, r#"{}"#));
}

#[test]
fn rule_ignore_headers() {
    let p = resp(200, &[("date", "Mon"), ("x-a", "1")], "{}");
    let c = resp(200, &[("Date", "Tue"), ("x-a", "1")], "{}");
    assert_eq!(
        comparator("")
            .compare_responses(&get("/"), None, &p, &c)
            .differences
            .len(),
        1
    );
    let y = rules("  - match: \"*\"\n    ignore_headers: [Date]\n");
    assert_match(&comparator(&y).compare_responses(&get("/"), None, &p, &c));
}

/// Issue 16: `ignore_headers: ["x-r*"]` passed check-config and matched nothing.
#[test]
fn rule_ignore_headers_globs() {
    let p = resp(
        200,
        &[
            ("x-request-id", "a"),
            ("X-Rate", "1"),
            ("x-b3-traceid", "t1"),
        ],
        "{}",
    );
    let c = resp(
        200,
        &[
            ("x-request-id", "b"),
            ("x-rate", "2"),
            ("x-b3-traceid", "t2"),
        ],
        "{}",
    );
    let y = rules("  - match: \"*\"\n    ignore_headers: [\"X-R*\"]\n");
    let v = comparator(&y).compare_responses(&get("/"), None, &p, &c);
    let fields: Vec<&str> = v.differences.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        ["@headers/x-b3-traceid"],
        "x-r* covers x-request-id and x-rate only"
    );
    // An invalid glob is a load error naming the key and the reason (check-rules, check-config).
    let e = RuleSet::from_yaml(&rules("  - match: \"*\"\n    ignore_headers: [\"x-r?\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ignore_headers: header name \"x-r?\": only `*` is a wildcard"),
        "{e}"
    );
}

#[test]
fn rule_unordered_is_a_multiset() {
    let y = rules("  - match: \"*\"\n    unordered: [\"/tags\", \"/objs\"]\n");
    let (p, c) = (r#"{"tags":["a","b","c"]}"#, r#"{"tags":["c","a","b"]}"#);
    assert_eq!(
        diff_json("", None, p, c).differences[0].kind,
        DiffKind::Order
    );
    assert_match(&diff_json(&y, None, p, c));
    // Duplicates count.
    let v = diff_json(&y, None, r#"{"tags":[1,1,2]}"#, r#"{"tags":[1,2,2]}"#);
    assert_diffs(
        &v.differences,
        &[
            ("/tags/1", "/tags/*", DiffKind::Missing, json!(1), null()),
            ("/tags/2", "/tags/*", DiffKind::Added, null(), json!(2)),
        ],
    );
    // Elements may be objects (key order inside them irrelevant).
    assert_match(&diff_json(
        &y,
        None,
        r#"{"objs":[{"a":1,"b":2},{"a":3}]}"#,
        r#"{"objs":[{"a":3},{"b":2,"a":1}]}"#,
    ));
    let v = diff_json(
        &y,
        None,
        r#"{"objs":[{"a":1},{"a":3}]}"#,
        r#"{"objs":[{"a":3},{"a":4}]}"#,
    );
    assert_diffs(
        &v.differences,
        &[
            (
                "/objs/0",
                "/objs/*",
                DiffKind::Missing,
                json!({"a":1}),
                null(),
            ),
            (
                "/objs/1",
                "/objs/*",
                DiffKind::Added,
                null(),
                json!({"a":4}),
            ),
        ],
    );
}

#[test]
fn rule_unordered_applies_nested_rules_inside_elements() {
    let y =
        rules("  - match: \"*\"\n    unordered: [\"/spans\"]\n    ignore: [\"/**/trace_id\"]\n");
    let (p, c) = (
        r#"{"spans":[{"n":1,"trace_id":"a"},{"n":2,"trace_id":"b"}]}"#,
        r#"{"spans":[{"n":2,"trace_id":"x"},{"n":1,"trace_id":"y"}]}"#,
    );
    assert_match(&diff_json(&y, None, p, c));
    let only_unordered = rules("  - match: \"*\"\n    unordered: [\"/spans\"]\n");
    assert_eq!(
        diff_json(&only_unordered, None, p, c).kind,
        VerdictKind::Mismatch
    );
}

/// Found by the `compare` fuzz target: equality within a tolerance is not transitive, so
/// pairing leftovers greedily (first equal element) reported elements that had a partner.
#[test]
fn unordered_with_tolerance_pairs_every_element_that_has_a_partner() {
    let y = rules(
        "  - match: \"*\"\n    unordered: [\"/xs\"]\n    tolerance: {\"/xs/*\": {abs: 0.5}}\n",
    );
    // 5 is within 0.5 of both; 5.55 only of 5.425.
    let (p, c) = (r#"{"xs":[5,5.55]}"#, r#"{"xs":[5.425,4.875]}"#);
    assert_match(&diff_json(&y, None, p, c));
    assert_match(&diff_json(&y, None, c, p));
    // The fuzzer's own input: three of the candidates could pair with the first 5.
    assert_match(&diff_json(
        &y,
        None,
        r#"{"xs":[5,5.55,5,5,0.0e99999999999999999999,null]}"#,
        r#"{"xs":[5.425,4.875,4.875,-0.125,null,4.875]}"#,
    ));
    // Still a difference when no pairing exists.
    let v = diff_json(&y, None, r#"{"xs":[5,5.55]}"#, r#"{"xs":[5.425,6.2]}"#);
    assert_eq!(v.differences.len(), 2, "{:?}", v.differences);
}

#[test]
fn unordered_hundred_thousand_reversed_is_match() {
    let y = rules("  - match: \"*\"\n    unordered: [\"/xs\"]\n");
    let xs: Vec<Value> = (0..100_000)
        .map(|i| json!({"id": i, "v": format!("item {i}")}))
        .collect();
    let mut rev = xs.clone();
    rev.reverse();
    let (p, c) = (
        json!({ "xs": xs }).to_string(),
        json!({ "xs": rev }).to_string(),
    );
    let t = Instant::now();
    let v = diff_json(&y, None, &p, &c);
    eprintln!("unordered 100k reversed: {:?}", t.elapsed());
    assert_match(&v);
}

#[test]
fn rule_keyed_pairs_by_key() {
    let y = rules("  - match: \"*\"\n    keyed: {\"/items\": sku}\n");
    let p = r#"{"items":[{"sku":"A","q":1},{"sku":"B","q":2},{"sku":"C","q":3}]}"#;
    let c = r#"{"items":[{"sku":"D","q":4},{"sku":"B","q":2},{"sku":"A","q":5}]}"#;
    let v = diff_json(&y, None, p, c);
    assert_diffs(
        &v.differences,
        &[
            // Paired A: reported at the primary index 0.
            (
                "/items/0/q",
                "/items/*/q",
                DiffKind::Value,
                json!(1),
                json!(5),
            ),
            // Unpaired: missing at the primary index, added at the candidate index.
            (
                "/items/2",
                "/items/*",
                DiffKind::Missing,
                json!({"sku":"C","q":3}),
                null(),
            ),
            (
                "/items/0",
                "/items/*",
                DiffKind::Added,
                null(),
                json!({"sku":"D","q":4}),
            ),
        ],
    );
    // Reordered only: match, no `order` or `length`.
    assert_match(&diff_json(
        &y,
        None,
        r#"{"items":[{"sku":"A"},{"sku":"B"}]}"#,
        r#"{"items":[{"sku":"B"},{"sku":"A"}]}"#,
    ));
    let v = diff_json(
        &y,
        None,
        r#"{"items":[{"sku":"A"}]}"#,
        r#"{"items":[{"sku":"B"},{"sku":"A"}]}"#,
    );
    assert_diffs(
        &v.differences,
        &[(
            "/items/0",
            "/items/*",
            DiffKind::Added,
            null(),
            json!({"sku":"B"}),
        )],
    );
    // Control: without the rule the reorder is an `order` difference.
    assert_eq!(
        diff_json(
            "",
            None,
            r#"{"items":[{"sku":"A"},{"sku":"B"}]}"#,
            r#"{"items":[{"sku":"B"},{"sku":"A"}]}"#
        )
        .differences[0]
            .kind,
        DiffKind::Order
    );
}

#[test]
fn rule_tolerance_abs_rel_and_either_bound() {
    let y = rules(
        "  - match: \"*\"\n    tolerance: {\"/total\": {abs: 0.01}, \"/items/*/price\": {rel: 0.001}, \"/both\": {abs: 0.5, rel: 0.1}}\n",
    );
    assert_eq!(
        diff_json("", None, r#"{"total":10.00}"#, r#"{"total":10.01}"#).kind,
        VerdictKind::Mismatch
    );
    assert_match(&diff_json(
        &y,
        None,
        r#"{"total":10.00}"#,
        r#"{"total":10.01}"#,
    ));
    assert_eq!(
        diff_json(&y, None, r#"{"total":10.00}"#, r#"{"total":10.02}"#).kind,
        VerdictKind::Mismatch
    );
    // rel: 0.1% of 1000 is 1.
    assert_match(&diff_json(
        &y,
        None,
        r#"{"items":[{"price":1000}]}"#,
        r#"{"items":[{"price":1000.9}]}"#,
    ));
    let v = diff_json(
        &y,
        None,
        r#"{"items":[{"price":1000}]}"#,
        r#"{"items":[{"price":1001.5}]}"#,
    );
    assert_diffs(
        &v.differences,
        &[(
            "/items/0/price",
            "/items/*/price",
            DiffKind::Value,
            json!(1000),
            json!(1001.5),
        )],
    );
    // Either bound suffices: abs 0.5 fails for 100 vs 109 but rel 0.1 (10.9) accepts;
    // rel fails for 1 vs 1.4 (0.14) but abs accepts.
    assert_match(&diff_json(&y, None, r#"{"both":100}"#, r#"{"both":109}"#));
    assert_match(&diff_json(&y, None, r#"{"both":1}"#, r#"{"both":1.4}"#));
    assert_eq!(
        diff_json(&y, None, r#"{"both":100}"#, r#"{"both":112}"#).kind,
        VerdictKind::Mismatch
    );
    // Tolerance does not apply where its path does not match.
    assert_eq!(
        diff_json(&y, None, r#"{"other":10.00}"#, r#"{"other":10.01}"#).kind,
        VerdictKind::Mismatch
    );
}

#[test]
fn rule_rewrite_runs_before_comparison() {
    let y = rules(
        "  - match: \"*\"\n    rewrite: [{path: \"/links/self\", regex: \"^https?://[^/]+\", replace: \"\"}]\n",
    );
    let (p, c) = (
        r#"{"links":{"self":"http://legacy:8080/orders/1"}}"#,
        r#"{"links":{"self":"https://new.example/orders/1"}}"#,
    );
    assert_eq!(diff_json("", None, p, c).kind, VerdictKind::Mismatch);
    assert_match(&diff_json(&y, None, p, c));
    let v = diff_json(
        &y,
        None,
        p,
        r#"{"links":{"self":"https://new.example/orders/2"}}"#,
    );
    assert_eq!(v.differences.len(), 1);
    assert_eq!(v.differences[0].path, "/links/self");
}

#[test]
fn rule_coerce_numbers_and_booleans_as_strings() {
    let y = rules("  - match: \"*\"\n    coerce: [\"/id\", \"/ok\", \"/amount\"]\n");
    let (p, c) = (
        r#"{"id":42,"ok":true,"amount":"1.50"}"#,
        r#"{"id":"42","ok":"true","amount":1.5}"#,
    );
    assert_eq!(diff_json("", None, p, c).differences.len(), 3);
    assert_match(&diff_json(&y, None, p, c));
    let v = diff_json(&y, None, r#"{"id":42}"#, r#"{"id":"43"}"#);
    assert_diffs(
        &v.differences,
        &[("/id", "/id", DiffKind::Value, json!(42), json!("43"))],
    );
    assert_eq!(
        diff_json(&y, None, r#"{"ok":true}"#, r#"{"ok":"false"}"#).kind,
        VerdictKind::Mismatch
    );
}

#[test]
fn rule_ignore_added_covers_keys_and_array_elements() {
    let y = rules("  - match: \"*\"\n    ignore_added: true\n");
    let (p, c) = (
        r#"{"a":1,"xs":[1,2]}"#,
        r#"{"a":1,"new":true,"xs":[1,2,3]}"#,
    );
    assert_eq!(
        diff_json("", None, p, c).differences.len(),
        3,
        "added key, added element, length"
    );
    assert_match(&diff_json(&y, None, p, c));
    // Missing stays reported.
    let v = diff_json(&y, None, r#"{"a":1,"xs":[1,2]}"#, r#"{"xs":[1]}"#);
    assert_diffs(
        &v.differences,
        &[
            ("/a", "/a", DiffKind::Missing, json!(1), null()),
            ("/xs/1", "/xs/*", DiffKind::Missing, json!(2), null()),
            ("/xs", "/xs", DiffKind::Length, json!(2), json!(1)),
        ],
    );
}

#[test]
fn endpoint_scoping() {
    let y = rules(
        "  - match: \"GET /orders/{id}\"\n    ignore: [\"/etag\"]\n  - match: \"*\"\n    ignore: [\"/ts\"]\n",
    );
    let (p, c) = (r#"{"etag":"a","ts":1}"#, r#"{"etag":"b","ts":2}"#);
    assert_match(&diff_json(&y, Some("GET /orders/{id}"), p, c));
    for other in [Some("GET /customers/{id}"), Some("POST /orders/{id}"), None] {
        let v = diff_json(&y, other, p, c);
        assert_diffs(
            &v.differences,
            &[("/etag", "/etag", DiffKind::Value, json!("a"), json!("b"))],
        );
    }
    // Through compare_responses with a concrete request path and no template.
    let cmp = comparator(&y);
    assert_match(&cmp.compare_responses(
        &get("/orders/42"),
        None,
        &resp(200, &[], p),
        &resp(200, &[], c),
    ));
    assert_eq!(
        cmp.compare_responses(
            &get("/orders/42/items"),
            None,
            &resp(200, &[], p),
            &resp(200, &[], c)
        )
        .kind,
        VerdictKind::Mismatch
    );
}

#[test]
fn endpoints_templates() {
    let set = RuleSet::from_yaml(
        "version: 1\nendpoints:\n  - \"GET /orders/{id}\"\n  - \"GET /orders/{id}/items\"\n",
    )
    .unwrap();
    assert_eq!(
        set.endpoint_for("GET", "/orders/42"),
        Some("GET /orders/{id}")
    );
    assert_eq!(
        set.endpoint_for("GET", "/orders/42/items"),
        Some("GET /orders/{id}/items")
    );
    assert_eq!(set.endpoint_for("POST", "/orders/42"), None);
    assert_eq!(set.endpoint_for("GET", "/customers/1"), None);
}

// ---------------------------------------------------------------------------------------------
// Bodies that are not JSON, and whole responses
// ---------------------------------------------------------------------------------------------

#[test]
fn text_bodies_give_body_differences_with_unified_excerpt() {
    let v = comparator("").compare_bodies(
        None,
        b"line one\nline two\nline three\n",
        b"line one\nline 2\nline three\n",
        Some("text/plain"),
        Some("text/plain"),
    );
    assert_eq!(v.kind, VerdictKind::Mismatch);
    assert_eq!(v.differences.len(), 1);
    let d = &v.differences[0];
    assert_eq!(d.kind, DiffKind::Body);
    assert_eq!(d.primary, json!("line two\n"));
    assert_eq!(d.candidate, json!("line 2\n"));
    let detail = d.detail.as_deref().unwrap();
    assert!(detail.starts_with("@@ -1,3 +1,3 @@\n"), "{detail}");
    assert!(
        detail.contains("-line two\n")
            && detail.contains("+line 2\n")
            && detail.contains(" line one\n"),
        "{detail}"
    );
}

/// Found by the `compare` fuzz target: similar 2.7's Myers gives the first op here (a `Delete`)
/// `new_index` 12 and the next (an `Equal`) 0; the hunk header subtracted one from the other.
#[test]
fn text_hunk_headers_survive_a_misplaced_delete() {
    let (p, c) = (
        "f\n\n\n\n\n\n\n\n\nalse+",
        "\n\n\n\n\n]\n\n@\n\n\n\n\n\n\n/0/0/1alue\n\n\n\n\n\n\t\n\n\n\n\n\n\n0\n",
    );
    let diffs = text::text_diff(p, c, None, text::MAX_HUNKS).differences;
    let detail = diffs[0].detail.as_deref().unwrap();
    // Line 1 of the primary deleted, with the two blank lines after it as context.
    assert!(detail.starts_with("@@ -1,3 +1,2 @@\n-f\n"), "{detail}");
    for d in &diffs {
        let header = d.detail.as_deref().unwrap().lines().next().unwrap();
        let numbers: Vec<usize> = header
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(numbers.iter().all(|n| *n <= 40), "{header}");
    }
}

#[test]
fn binary_bodies_equal_or_not() {
    let cmp = comparator("");
    let a = [0u8, 159, 146, 150, 1, 2];
    assert_match(&cmp.compare_bodies(None, &a, &a, None, None));
    let v = cmp.compare_bodies(None, &a, &[0u8, 159, 146, 150, 1, 3], None, None);
    assert_eq!(v.differences.len(), 1);
    assert_eq!(v.differences[0].kind, DiffKind::Body);
    assert_eq!(
        v.differences[0].detail.as_deref(),
        Some("binary bodies differ")
    );
}

#[test]
fn invalid_json_with_json_content_type_is_text_with_a_note() {
    let v = comparator("").compare_bodies(
        None,
        b"{\"a\": 1,",
        b"{\"a\": 2,",
        Some("application/json"),
        Some("application/json"),
    );
    assert_eq!(v.kind, VerdictKind::Mismatch);
    assert!(v.differences.iter().all(|d| d.kind == DiffKind::Body));
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("not valid JSON") && n.contains("compared as text")),
        "{:?}",
        v.notes
    );
}

#[test]
fn html_error_page_versus_json() {
    let v = comparator("").compare_bodies(
        None,
        br#"{"id":1}"#,
        b"<html><body>502 Bad Gateway</body></html>",
        Some("application/json"),
        Some("text/html"),
    );
    assert_eq!(v.kind, VerdictKind::Mismatch);
    assert_eq!(v.differences[0].kind, DiffKind::Body);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("only the primary body is JSON")),
        "{:?}",
        v.notes
    );
}

#[test]
fn status_difference() {
    let v = comparator("").compare_responses(
        &get("/"),
        None,
        &resp(200, &[], "{}"),
        &resp(404, &[], "{}"),
    );
    assert_diffs(
        &v.differences,
        &[(
            "@status",
            "@status",
            DiffKind::Status,
            json!(200),
            json!(404),
        )],
    );
    assert_eq!(v.kind, VerdictKind::Mismatch);
}

#[test]
fn headers_case_insensitive_transport_never_compared_secrets_redacted() {
    let cmp = comparator("");
    let p = resp(
        200,
        &[
            ("X-Api-Version", "2"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("authorization", "Bearer s3cret"),
            ("Set-Cookie", "sid=1"),
        ],
        "{}",
    );
    let c = resp(
        200,
        &[
            ("x-api-version", "2"),
            ("Content-Length", "99"),
            ("authorization", "Bearer other"),
            ("set-cookie", "sid=2"),
            ("cookie", "c=1"),
        ],
        "{}",
    );
    let v = cmp.compare_responses(&get("/"), None, &p, &c);
    assert_diffs(
        &v.differences,
        &[
            (
                "@headers/authorization",
                "@headers/authorization",
                DiffKind::Header,
                json!(REDACTED),
                json!(REDACTED),
            ),
            (
                "@headers/cookie",
                "@headers/cookie",
                DiffKind::Header,
                null(),
                json!(REDACTED),
            ),
            (
                "@headers/set-cookie",
                "@headers/set-cookie",
                DiffKind::Header,
                json!(REDACTED),
                json!(REDACTED),
            ),
        ],
    );
    let text = serde_json::to_string(&v.differences).unwrap();
    assert!(!text.contains("s3cret") && !text.contains("sid="), "{text}");
    // A non-secret header difference keeps its values.
    let v = cmp.compare_responses(
        &get("/"),
        None,
        &resp(200, &[("x-a", "1")], ""),
        &resp(200, &[("X-A", "2")], ""),
    );
    assert_diffs(
        &v.differences,
        &[(
            "@headers/x-a",
            "@headers/x-a",
            DiffKind::Header,
            json!("1"),
            json!("2"),
        )],
    );
}

#[test]
fn candidate_5xx_is_candidate_error() {
    let cmp = comparator("");
    let v = cmp.compare_responses(
        &get("/"),
        None,
        &resp(200, &[], "{}"),
        &resp(503, &[], "{}"),
    );
    assert_eq!(v.kind, VerdictKind::CandidateError);
    // Both 5xx: an ordinary comparison.
    assert_match(&cmp.compare_responses(
        &get("/"),
        None,
        &resp(500, &[], "{}"),
        &resp(500, &[], "{}"),
    ));
    assert_eq!(
        cmp.compare_responses(
            &get("/"),
            None,
            &resp(500, &[], "{}"),
            &resp(502, &[], "{}")
        )
        .kind,
        VerdictKind::Mismatch
    );
}

fn exchange_with(candidate: exchange::Outcome) -> Exchange {
    Exchange {
        id: "x".into(),
        ts: std::time::SystemTime::UNIX_EPOCH,
        source: "diff",
        endpoint: "GET /".into(),
        request: get("/"),
        primary: resp(200, &[], "{}"),
        candidate,
        secondary: None,
        sends: None,
    }
}

#[test]
fn candidate_timeout_or_refused_is_candidate_error() {
    let cmp = comparator("");
    let t = cmp.compare(&exchange_with(Err(UpstreamError::Timeout(
        Duration::from_secs(5),
    ))));
    let r = cmp.compare(&exchange_with(Err(UpstreamError::Refused(
        "127.0.0.1:1".into(),
    ))));
    assert_eq!(t.kind, VerdictKind::CandidateError);
    assert_eq!(r.kind, VerdictKind::CandidateError);
    assert_ne!(
        t.signature, r.signature,
        "timeouts and refusals are different failures"
    );
    assert_eq!(
        cmp.compare(&exchange_with(Ok(resp(200, &[], "{}")))).kind,
        VerdictKind::Match
    );
}

#[test]
fn gzip_versus_identity_same_content_is_match() {
    let body = br#"{"id":1,"name":"x"}"#;
    let p = resp(200, &[("content-type", "application/json")], &body[..]);
    let c = resp(
        200,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        gzip(body),
    );
    assert_match(&comparator("").compare_responses(&get("/"), None, &p, &c));
    let c2 = resp(
        200,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        gzip(br#"{"id":2,"name":"x"}"#),
    );
    assert_diffs(
        &comparator("")
            .compare_responses(&get("/"), None, &p, &c2)
            .differences,
        &[("/id", "/id", DiffKind::Value, json!(1), json!(2))],
    );
}

#[test]
fn zip_bomb_is_skipped_body_too_large() {
    let bomb = gzip(&vec![b' '; 32 << 20]);
    let cmp = Comparator::new(
        Arc::new(RuleSet::default()),
        CompareOptions {
            max_decoded_bytes: 1 << 20,
            max_differences: 100,
            grpc: None,
        },
    );
    let v = cmp.compare_responses(
        &get("/"),
        None,
        &resp(200, &[], "{}"),
        &resp(200, &[("content-encoding", "gzip")], bomb),
    );
    assert_eq!(v.kind, VerdictKind::Skipped);
    assert_eq!(v.skip_reason, Some(SkipReason::BodyTooLarge));
}

// ---------------------------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------------------------

fn d(path: &str, field: &str, kind: DiffKind, p: Value) -> Difference {
    Difference {
        path: path.into(),
        field: field.into(),
        kind,
        primary: p,
        candidate: Value::Null,
        noise: false,
        detail: None,
    }
}

#[test]
fn signature_depends_only_on_the_set_of_field_kind_pairs() {
    let a = vec![
        d(
            "/items/0/price",
            "/items/*/price",
            DiffKind::Value,
            json!(1),
        ),
        d("/id", "/id", DiffKind::Missing, json!(2)),
    ];
    let b = vec![
        d("/id", "/id", DiffKind::Missing, json!("other")),
        d(
            "/items/7/price",
            "/items/*/price",
            DiffKind::Value,
            json!(9),
        ),
        d(
            "/items/3/price",
            "/items/*/price",
            DiffKind::Value,
            json!(5),
        ),
    ];
    assert_eq!(signature(&a), signature(&b));
    assert_ne!(
        signature(&a),
        signature(&[d("/id", "/id", DiffKind::Added, json!(2))])
    );
    assert_ne!(signature(&a), signature(&a[..1]));
    // A literal value: changing the algorithm changes every stored signature, so it must be a
    // deliberate decision (SHA-256 of sorted "field\0kind\n" lines, first 4 bytes in hex).
    assert_eq!(
        signature(&[d(
            "/items/0/price",
            "/items/*/price",
            DiffKind::Value,
            json!(1)
        )]),
        "5f38bf9d"
    );
    let v = diff_json(
        "",
        None,
        r#"{"items":[{"price":1},{"price":2}]}"#,
        r#"{"items":[{"price":3},{"price":4}]}"#,
    );
    assert_eq!(v.signature.as_deref(), Some("5f38bf9d"));
    assert_eq!(diff_json("", None, "{}", "{}").signature, None);
}

#[test]
fn every_enum_index_is_its_position_in_all() {
    for (i, k) in DiffKind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i, "{k:?}");
    }
    for (i, k) in VerdictKind::ALL.iter().enumerate() {
        assert_eq!(k.index(), i, "{k:?}");
    }
    for (i, k) in SkipReason::ALL.iter().enumerate() {
        assert_eq!(k.index(), i, "{k:?}");
    }
}
