#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::compare::rules::RuleSet;
use crate::config::Config;
use crate::event::Event;
use crate::exchange::{Request, Response};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, SystemTime};

const CARD_NO: &str = "4111111111111111"; // Luhn-valid test Visa
const CARD_SPACED: &str = "5500 0000 0000 0004"; // Luhn-valid test Mastercard
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJlLXNlY3JldA";

fn red(yaml: &str, max: usize) -> Redaction {
    let cfg: RedactConfig = serde_yaml_ng::from_str(yaml).unwrap();
    Redaction::from_config(&cfg, max)
}

pub(super) fn resp(body: &str, ct: &str) -> Response {
    let mut h = http::HeaderMap::new();
    if !ct.is_empty() {
        h.insert("content-type", ct.parse().unwrap());
    }
    Response {
        status: 200,
        headers: h,
        body: bytes::Bytes::from(body.to_string()),
        latency: Duration::from_micros(100),
    }
}

fn exchange(p: Response, c: Response) -> Exchange {
    Exchange {
        id: "01TEST".into(),
        ts: SystemTime::UNIX_EPOCH,
        source: "proxy",
        endpoint: "GET /x".into(),
        request: Request {
            method: "GET".into(),
            path: "/x".into(),
            ..Request::default()
        },
        primary: p,
        candidate: Ok(c),
        secondary: None,
        sends: None,
    }
}

pub(super) fn json_ex(p: &str, c: &str) -> Exchange {
    exchange(resp(p, "application/json"), resp(c, "application/json"))
}

/// The published event of `ex` under `r`, as one JSON line.
fn line(r: &Redaction, ex: &Exchange) -> (Event, String) {
    let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
    let v = cmp.compare(ex);
    let ev = Event::build(ex, &v, "pod-1", r);
    let line = ev.to_json_line();
    (ev, line)
}

fn assert_absent(line: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!line.contains(s), "{s:?} leaked in {line}");
    }
}

fn diff<'e>(ev: &'e Event, path: &str) -> &'e Difference {
    ev.differences
        .iter()
        .find(|d| d.path == path)
        .unwrap_or_else(|| panic!("no difference at {path:?} in {:#?}", ev.differences))
}

// ----- configuration -----

#[test]
fn defaults_hide_the_four_headers_the_default_query_names_and_run_every_detector() {
    let c = RedactConfig::default();
    assert_eq!(c.patterns, Detector::ALL.to_vec());
    assert_eq!(c.headers.len(), 4);
    let r = Redaction::default();
    assert_eq!(
        r.query("access_token=a1&Token=a2&API_KEY=a3&apikey=a4&password=a5&secret=a6&signature=a7&code=a8&page=2"),
        "access_token=<redacted>&Token=<redacted>&API_KEY=<redacted>&apikey=<redacted>&\
         password=<redacted>&secret=<redacted>&signature=<redacted>&code=<redacted>&page=2"
    );
    assert_eq!(r.text("mail a@b.com"), "mail <redacted:email>");
}

#[test]
fn the_redact_section_parses_with_every_key_and_reports_bad_ones_at_their_lines() {
    let ok = Config::from_yaml(
        Path::new("s.yaml"),
        "redact:\n  headers: [x-api-key]\n  paths: [/card, /**/token]\n  query: [Session]\n  patterns: [email]\n",
    )
    .unwrap();
    assert_eq!(ok.redact.paths.len(), 2);
    assert_eq!(ok.redact.query, vec!["session".to_string()]);
    assert_eq!(ok.redact.patterns, vec![Detector::Email]);

    let bad = Config::from_yaml(
        Path::new("s.yaml"),
        "listen: 127.0.0.1:1\nredact:\n  paths: [card]\n  query: [\"a=b\"]\n  patterns: [email, ssn]\n  colour: red\n",
    )
    .unwrap_err();
    let msgs: Vec<String> = bad.0.iter().map(|p| p.to_string()).collect();
    let at = |line: usize, what: &str| {
        assert!(
            msgs.iter()
                .any(|m| m.starts_with(&format!("s.yaml:{line}:")) && m.contains(what)),
            "no problem at line {line} mentioning {what:?}: {msgs:#?}"
        )
    };
    at(3, "redact.paths");
    at(4, "redact.query");
    at(5, "ssn");
    at(6, "colour");
}

#[test]
fn an_empty_pattern_list_turns_the_detectors_off() {
    let r = red("{patterns: []}", 1 << 10);
    let s = format!("{CARD_NO} a@b.com Bearer abc {JWT}");
    assert_eq!(r.text(&s), s);
    // Query names and headers stay on: they are not detectors.
    assert_eq!(r.query("token=x"), "token=<redacted>");
}

// ----- paths in every difference that contains them -----

#[test]
fn a_parent_missing_in_the_candidate_hides_the_redacted_child() {
    let r = red("{paths: [/card/number]}", 1 << 10);
    let ex = json_ex(
        r#"{"id":1,"card":{"number":"4000-0000-0000-0002","holder":"Ann"}}"#,
        r#"{"id":1}"#,
    );
    let (ev, l) = line(&r, &ex);
    assert_absent(&l, &["4000-0000-0000-0002"]);
    let d = diff(&ev, "/card");
    assert_eq!(d.kind, DiffKind::Missing);
    assert_eq!(d.primary, json!({"number": "<redacted>", "holder": "Ann"}));
}

#[test]
fn a_type_change_above_a_redacted_path_hides_it_on_both_sides() {
    let r = red("{paths: [/account/*/secret]}", 1 << 10);
    let ex = json_ex(
        r#"{"account":{"main":{"secret":"s3cr3t-one","n":1}}}"#,
        r#"{"account":[{"secret":"s3cr3t-two"}]}"#,
    );
    let (ev, l) = line(&r, &ex);
    assert_absent(&l, &["s3cr3t-one", "s3cr3t-two"]);
    let d = diff(&ev, "/account");
    assert_eq!(d.kind, DiffKind::Type);
    assert_eq!(d.primary, json!({"main": {"secret": "<redacted>", "n": 1}}));
    assert_eq!(d.candidate, json!([{"secret": "<redacted>"}]));
}

#[test]
fn arrays_of_objects_holding_a_token_are_masked_in_missing_added_and_order_differences() {
    let r = red("{paths: [/**/token]}", 1 << 10);
    let ex = json_ex(
        r#"{"s":[{"id":1,"token":"tok-AAA"},{"id":2,"token":"tok-BBB"}],"t":[{"id":1,"token":"tok-CCC"}]}"#,
        r#"{"s":[{"id":2,"token":"tok-BBB"},{"id":1,"token":"tok-AAA"}],"t":[{"id":1,"token":"tok-CCC"},{"id":9,"token":"tok-DDD"}]}"#,
    );
    let (ev, l) = line(&r, &ex);
    assert_absent(&l, &["tok-AAA", "tok-BBB", "tok-CCC", "tok-DDD"]);
    assert_eq!(diff(&ev, "/s").kind, DiffKind::Order);
    assert_eq!(diff(&ev, "/t/1").kind, DiffKind::Added);
    assert_eq!(
        diff(&ev, "/t/1").candidate,
        json!({"id": 9, "token": "<redacted>"})
    );
    // The whole body at the root is a parent too.
    assert_eq!(
        ev.primary.body["s"][0],
        json!({"id": 1, "token": "<redacted>"})
    );
}

#[test]
fn a_difference_below_a_redacted_node_hides_the_keys_beneath_it() {
    let r = red("{paths: [/keys]}", 1 << 10);
    let ex = json_ex(
        r#"{"keys":{"k-SECRETKEYNAME":1}}"#,
        r#"{"keys":{"k-SECRETKEYNAME":2}}"#,
    );
    let (ev, l) = line(&r, &ex);
    assert_absent(&l, &["SECRETKEYNAME"]);
    let d = &ev.differences[0];
    assert_eq!(d.path, "/keys/<redacted>");
    assert_eq!(d.primary, json!(REDACTED));
}

#[test]
fn a_root_body_difference_against_text_never_carries_raw_json() {
    let r = red("{paths: [/card, /**/token]}", 1 << 12);
    // The token is written with a JSON escape: a search for its value in the raw text would
    // miss it; parsing cannot.
    let ex = exchange(
        resp(
            "{\"name\":\"Ann\",\"card\":{\"pan\":\"9999-PAN-SECRET\"},\"s\":[{\"token\":\"\\u0073ecretTOKEN\"}]}",
            "application/json",
        ),
        resp("upstream exploded\n", "text/plain"),
    );
    let (ev, l) = line(&r, &ex);
    assert_absent(&l, &["9999-PAN-SECRET", "ecretTOKEN", "u0073"]);
    let d = diff(&ev, "");
    assert_eq!(d.kind, DiffKind::Body);
    let detail = d.detail.as_deref().unwrap();
    assert!(detail.contains("\"name\": \"Ann\""), "{detail}");
    assert!(detail.contains("+upstream exploded"), "{detail}");
    assert!(detail.contains("\"card\": \"<redacted>\""), "{detail}");
}

#[test]
fn text_that_mentions_a_redacted_key_is_withheld_and_ndjson_lines_are_masked() {
    let r = red("{paths: [/**/token]}", 1 << 12);
    let broken = r#"{"user":{"token":"tok-BROKEN""#;
    assert!(
        r.body(&http::HeaderMap::new(), &broken.into())
            .as_str()
            .unwrap()
            .starts_with("<withheld")
    );
    let nd = "{\"token\":\"tok-ND1\",\"n\":1}\n{\"token\":\"tok-ND2\",\"n\":2}\n";
    let out = r.body(&http::HeaderMap::new(), &nd.into());
    let s = out.as_str().unwrap();
    assert_absent(s, &["tok-ND1", "tok-ND2"]);
    assert!(s.contains(r#""n":2"#), "{s}");
    // A string inside JSON holding embedded JSON or a form is withheld too.
    let ex = json_ex(
        r#"{"payload":"{\"token\":\"tok-EMBED\"}"}"#,
        r#"{"payload":"x"}"#,
    );
    let (_, l) = line(&r, &ex);
    assert_absent(&l, &["tok-EMBED"]);
}

// ----- query -----

#[test]
fn query_parameters_are_hidden_in_the_query_in_links_in_headers_and_in_forms() {
    let r = red("{query: [session]}", 1 << 12);
    assert_eq!(
        r.query("Access_Token=abc&page=2&session=s1&access%5Ftoken=enc&empty="),
        "Access_Token=<redacted>&page=2&session=<redacted>&access%5Ftoken=<redacted>&empty="
    );
    let ex = json_ex(
        r#"{"next":"https://api/x?page=2&token=tok-LINK"}"#,
        r#"{"next":"https://api/x?page=3&token=tok-LINK2"}"#,
    );
    let (ev, l) = line(&r, &ex);
    assert_absent(&l, &["tok-LINK"]);
    assert_eq!(
        diff(&ev, "/next").primary,
        json!("https://api/x?page=2&token=<redacted>")
    );
    let mut h = http::HeaderMap::new();
    h.insert("location", "/cb?code=c0de-SECRET&state=1".parse().unwrap());
    assert_eq!(r.headers(&h)["location"], "/cb?code=<redacted>&state=1");
    let mut fh = http::HeaderMap::new();
    fh.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    assert_eq!(
        r.body(&fh, &"user=ann&password=hunter2".into()),
        json!("user=ann&password=<redacted>")
    );
}

// ----- patterns -----

#[test]
fn cards_are_found_with_separators_and_luhn_and_nothing_else_is() {
    let r = Redaction::default();
    assert_eq!(
        r.text(&format!("pay {CARD_NO} now")),
        "pay <redacted:card> now"
    );
    assert_eq!(r.text(CARD_SPACED), "<redacted:card>");
    assert_eq!(r.text("4111-1111-1111-1111"), "<redacted:card>");
    assert_eq!(r.text("x4111111111111111y"), "x<redacted:card>y");
    // An expiry after the number does not hide it.
    assert_eq!(r.text("4111 1111 1111 1111 12 25"), "<redacted:card> 12 25");
    // Luhn fails: not a card.
    assert_eq!(r.text("4111111111111112"), "4111111111111112");
    // Too short, or a longer identifier without separators.
    assert_eq!(r.text("411111111111"), "411111111111");
    let long = "41111111111111110000";
    assert_eq!(r.text(long), long);
    // A card written as a JSON number.
    let ex = json_ex(r#"{"pan":4111111111111111}"#, r#"{"pan":1}"#);
    let (ev, l) = line(&r, &ex);
    assert_absent(&l, &[CARD_NO]);
    assert_eq!(diff(&ev, "/pan").primary, json!(CARD));
}

#[test]
fn emails_and_bearer_tokens_and_jwts_are_replaced() {
    let r = Redaction::default();
    assert_eq!(
        r.text("to ann.lee+x@mail.example.co.uk."),
        "to <redacted:email>."
    );
    assert_eq!(r.text("Bearer abc.DEF-123=="), "Bearer <redacted:bearer>");
    assert_eq!(r.text(&format!("t={JWT}&x=1")), "t=<redacted:bearer>&x=1");
    assert_eq!(r.text("heyJude.txt"), "heyJude.txt");
    // Percent-encoded: decoded, detected, published decoded.
    assert_eq!(r.text("/u/ann%40b.com"), "/u/<redacted:email>");
    assert_eq!(r.text("/u/ann%2540b.com"), "/u/<redacted:email>");
}

#[test]
fn patterns_run_over_paths_keys_header_values_notes_and_the_request() {
    let r = Redaction::default();
    let mut ex = json_ex(
        r#"{"users":{"ann@corp.example":{"age":30}}}"#,
        r#"{"users":{"ann@corp.example":{"age":31}}}"#,
    );
    ex.request.path = "/users/ann@corp.example/cards/4111111111111111".into();
    ex.request.query = Some("email=bob%40corp.example&page=1".into());
    ex.request.headers.insert("x-session", JWT.parse().unwrap());
    ex.endpoint = "GET /users/ann@corp.example/cards/{id}".into();
    let (ev, l) = line(&r, &ex);
    assert_absent(
        &l,
        &["ann@corp", "bob", CARD_NO, "eyJhbGci", "c2lnbmF0dXJl"],
    );
    assert_eq!(
        ev.request.path,
        "/users/<redacted:email>/cards/<redacted:card>"
    );
    assert_eq!(
        ev.request.query.as_deref(),
        Some("email=<redacted:email>&page=1")
    );
    assert_eq!(ev.request.headers["x-session"], BEARER);
    assert_eq!(
        diff(&ev, "/users/<redacted:email>/age").field,
        "/users/<redacted:email>/age"
    );
    assert!(ev.primary.body["users"]["<redacted:email>"].is_object());
}

#[test]
fn two_keys_that_scrub_alike_are_both_kept() {
    let r = Redaction::default();
    let v = r.body(
        &http::HeaderMap::new(),
        &r#"{"a@b.com":1,"c@d.com":2}"#.into(),
    );
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
}

// ----- headers -----

#[test]
fn hidden_headers_stay_hidden_in_maps_diffs_echoed_json_and_header_lines_in_text() {
    // Even a config that leaves them out.
    let r = red("{headers: [x-api-key]}", 1 << 12);
    let mut p = resp(
        "GET / HTTP/1.1\nHost: a\nCookie: session=COOKIE-SECRET\nAuthorization: Basic QUJD\nX: 1\n",
        "message/http",
    );
    p.headers
        .insert("set-cookie", "sid=SID-ONE".parse().unwrap());
    p.headers.insert("x-api-key", "KEY-ONE".parse().unwrap());
    let mut c = resp(
        "GET / HTTP/1.1\nHost: a\nCookie: session=COOKIE-SECRET\nAuthorization: Basic QUJD\nX: 2\n",
        "message/http",
    );
    c.headers
        .insert("set-cookie", "sid=SID-TWO".parse().unwrap());
    c.headers.insert("x-api-key", "KEY-TWO".parse().unwrap());
    let (ev, l) = line(&r, &exchange(p, c));
    assert_absent(
        &l,
        &[
            "COOKIE-SECRET",
            "QUJD",
            "SID-ONE",
            "SID-TWO",
            "KEY-ONE",
            "KEY-TWO",
        ],
    );
    assert_eq!(diff(&ev, "@headers/x-api-key").primary, json!(REDACTED));
    assert_eq!(diff(&ev, "@headers/set-cookie").candidate, json!(REDACTED));
    let body = diff(&ev, "");
    assert!(
        body.detail
            .as_deref()
            .unwrap()
            .contains(" Cookie: <redacted>")
    );
    assert!(body.detail.as_deref().unwrap().contains("+X: 2"));

    let echo = r.body(
        &http::HeaderMap::new(),
        &r#"{"headers":{"Cookie":"c=ECHO","X-Api-Key":"k","Accept":"*/*"},"authorization":{"approved":true}}"#.into(),
    );
    assert_eq!(echo["headers"]["Cookie"], json!(REDACTED));
    assert_eq!(echo["headers"]["X-Api-Key"], json!(REDACTED));
    assert_eq!(echo["headers"]["Accept"], json!("*/*"));
    // A payment "authorization" object is not a header value: only strings are hidden.
    assert_eq!(echo["authorization"]["approved"], json!(true));
}

// ----- size -----

#[test]
fn every_published_value_is_capped_numbers_included() {
    let r = Redaction::default();
    let big = "7".repeat(1_000_000);
    let d = Difference {
        path: "/n".into(),
        field: "/n".into(),
        kind: DiffKind::Value,
        primary: Value::Number(serde_json::Number::from_string_unchecked(big.clone())),
        candidate: Value::String("x".repeat(100_000)),
        noise: false,
        detail: Some("y".repeat(100_000)),
    };
    let out = r.difference(&d);
    let p = out.primary.as_str().unwrap();
    assert!(p.len() < (16 << 10) + 64, "{}", p.len());
    assert!(
        p.ends_with("… <truncated: 1000000 bytes>"),
        "{}",
        &p[p.len() - 40..]
    );
    assert!(
        out.candidate
            .as_str()
            .unwrap()
            .ends_with("<truncated: 100000 bytes>")
    );
    assert!(out.detail.unwrap().len() < (16 << 10) + 64);
    // End to end: the comparator's own excerpt bounds the number, the event bounds the rest.
    let ex = json_ex(&format!(r#"{{"n":{big}}}"#), r#"{"n":1}"#);
    let (_, l) = line(&red("{}", 4096), &ex);
    assert!(l.len() < 20_000, "{}", l.len());
    assert!(!l.contains(&"7".repeat(5000)));
    let mut h = http::HeaderMap::new();
    h.insert("x-big", "z".repeat(10_000).parse().unwrap());
    assert!(red("{}", 100).headers(&h)["x-big"].len() < 200);
    assert!(red("{}", 100).query(&"q=1&".repeat(1000)).len() < 200);
}

#[test]
fn the_comparators_excerpt_bounds_a_huge_number_before_any_event_is_built() {
    let big = "9".repeat(1_000_000);
    let ex = json_ex(&format!(r#"{{"n":{big}}}"#), r#"{"n":1}"#);
    let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
    let v = cmp.compare(&ex);
    let p = v.differences[0].primary.as_str().unwrap();
    assert!(
        p.len() < 1100 && p.ends_with("(1000000 chars)"),
        "{}",
        p.len()
    );
}

#[test]
fn scrubbing_is_idempotent() {
    let r = red("{paths: [/t]}", 1 << 12);
    for s in [
        format!("?token=abc&x=1 Bearer zz {JWT} a@b.com {CARD_SPACED}"),
        "Cookie: a=b\n\"cookie\": \"x\"".to_string(),
    ] {
        let once = r.text(&s);
        assert_eq!(r.text(&once), once, "{s}");
    }
}

#[test]
fn every_constant_pattern_compiles() {
    assert!(detect::all_compiled());
    assert!(QUERY_PAIR.is_some());
    let r = red("{headers: [\"x.y\"], paths: [\"/a(b\", \"/**\"]}", 10);
    assert!(!r.broken);
    assert!(r.withhold_all_text);
}

#[test]
fn luhn_matches_known_numbers() {
    for ok in [
        "4111111111111111",
        "5500000000000004",
        "378282246310005",
        "79927398713",
    ] {
        assert!(detect::luhn(ok.bytes()), "{ok}");
    }
    for bad in ["4111111111111112", "79927398710", ""] {
        assert!(!detect::luhn(bad.bytes()), "{bad}");
    }
}
