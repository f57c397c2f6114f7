//! The planted world of the redaction tests (issue 12, item 3), shared by the in-process test
//! (`tests/redaction.rs`), the real binary's (`tests/hostile_pii.rs`), Kafka's
//! (`tests/kafka.rs`) and the review UI's (`tests/ui.rs`): upstreams whose answers carry secrets
//! in every corner, requests that carry more (URL path, query, headers, a form body), the
//! `redact:` settings that name some of them, and the checks — no secret in any byte of a
//! surface, and the events still say what differed, and where.
//!
//! `run.rs` starts the upstreams and the real binary and sends the requests; `check.rs` holds the
//! checks. The upstreams are plain threads on 127.0.0.1 speaking HTTP/1.1 by hand, so one of them can
//! also answer what no HTTP library would write (a chunk-size line holding an e-mail address,
//! which the shadow client's error then quotes).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod check;
mod run;

pub use check::*;
pub use run::*;

use serde_json::json;
use std::sync::LazyLock;

// Under `redact.paths`.
pub const CARD_NUMBER: &str = "4000-0566-5566-5556"; // under /card/number; the parent goes missing
pub const ACCOUNT_SECRET: &str = "acct-SECRET-7731"; // under /account/secret; /account changes type
pub const SESSION_TOKEN_A: &str = "sess-TOKEN-AAA"; // /**/token in an array of objects
pub const SESSION_TOKEN_B: &str = "sess-TOKEN-BBB"; // ... in the element the candidate drops
pub const TEXT_TOKEN: &str = "prof-TOKEN-CCC"; // /**/token in JSON answered by text
pub const TEXT_CARD: &str = "4000-0000-0000-0077"; // /card/number in JSON answered by text
// Query strings.
pub const ACCESS_TOKEN: &str = "qry-ACCESS-TOKEN-DDD";
pub const QUERY_EMAIL: &str = "ann.query@example.com";
// Headers.
pub const BEARER_TOKEN: &str = "auth-BEARER-EEE";
pub const COOKIE: &str = "cookie-FFF";
pub const HEADER_EMAIL: &str = "ann.header@example.com";
pub const JWT_REQUEST: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZXEifQ.cmVxLXNpZ25hdHVyZQ";
pub const JWT_PRIMARY: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcmkifQ.cHJpLXNpZ25hdHVyZQ";
pub const JWT_CANDIDATE: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW4ifQ.Y2FuLXNpZ25hdHVyZQ";
pub const OAUTH_CODE_P: &str = "oauth-CODE-PPP"; // `?code=` in a link header that differs
pub const OAUTH_CODE_C: &str = "oauth-CODE-CCC";
pub const TRACE_COOKIE: &str = "trace-COOKIE-GGG"; // a Cookie line in a text diff of headers
// Detectors, in body strings, in JSON keys and in the URL path.
pub const BODY_EMAIL_P: &str = "ann.body@example.com";
pub const BODY_EMAIL_C: &str = "ann.cand@example.com";
pub const BODY_CARD_P: &str = "5555 5555 5555 4444";
pub const BODY_CARD_C: &str = "4242-4242-4242-4242";
pub const KEY_EMAIL: &str = "ann.key@example.com";
pub const KEY_CARD: &str = "4012888888881881";
pub const NUMBER_CARD: &str = "378282246310005"; // a card written as a JSON number
pub const QUERY_EMAIL_ENCODED: &str = "bob.enc%40example.com";
// In the URL path itself: templating keeps these segments, the redaction must not.
pub const PATH_EMAIL: &str = "ann.path@example.com";
pub const PATH_CARD: &str = "5105105105105100"; // digits only: templated to {id}
pub const PATH_CARD_DASHED: &str = "6011-1111-1111-1117"; // not an identifier: kept by templating
pub const PATH_EMAIL_ENCODED: &str = "ann.penc%40example.com";
pub const PATH_JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwYXRoIn0.cGF0aC1zaWduYXR1cmU";
pub const MATRIX_TOKEN: &str = "mtx-TOKEN-JJJ"; // `;access_token=` in a path segment
// A form body (POST is mirrored in this world).
pub const FORM_PASSWORD: &str = "form-PASSWORD-KKK";
// A candidate answering broken JSON that holds a redacted key's value.
pub const BROKEN_TOKEN: &str = "brk-TOKEN-HHH";
// A key below a redacted node (/vault): part of its value.
pub const VAULT_KEY: &str = "vk-KEYNAME-III";
// Chunk-size lines the shadow client cannot parse and quotes in its error: one with an e-mail
// address, one with a redacted key's value (the whole error is withheld then).
pub const CHUNK_EMAIL: &str = "ann.chunk@example.com";
pub const CHUNK_TOKEN: &str = "chk-TOKEN-LLL";

/// 200,000 digits: published whole, it would bypass `publish.max_body_bytes`.
pub static BIG: LazyLock<String> = LazyLock::new(|| "1234567890".repeat(20_000));

pub const SECRETS: &[&str] = &[
    CARD_NUMBER,
    "4000056655665556",
    ACCOUNT_SECRET,
    SESSION_TOKEN_A,
    SESSION_TOKEN_B,
    TEXT_TOKEN,
    TEXT_CARD,
    "4000000000000077",
    ACCESS_TOKEN,
    QUERY_EMAIL,
    "ann.query%40example.com",
    BEARER_TOKEN,
    COOKIE,
    HEADER_EMAIL,
    JWT_REQUEST,
    JWT_PRIMARY,
    JWT_CANDIDATE,
    PATH_JWT,
    // The parts of a JWT are secrets on their own (the payload above all).
    "eyJzdWIiOiJyZXEifQ",
    "eyJzdWIiOiJwcmkifQ",
    "eyJzdWIiOiJjYW4ifQ",
    "eyJzdWIiOiJwYXRoIn0",
    OAUTH_CODE_P,
    OAUTH_CODE_C,
    TRACE_COOKIE,
    BODY_EMAIL_P,
    BODY_EMAIL_C,
    BODY_CARD_P,
    "5555555555554444",
    BODY_CARD_C,
    "4242424242424242",
    KEY_EMAIL,
    KEY_CARD,
    PATH_EMAIL,
    PATH_CARD,
    PATH_CARD_DASHED,
    "6011111111111117",
    "ann.penc",
    MATRIX_TOKEN,
    FORM_PASSWORD,
    NUMBER_CARD,
    "bob.enc",
    BROKEN_TOKEN,
    VAULT_KEY,
    CHUNK_EMAIL,
    CHUNK_TOKEN,
];

/// The config text of this world, after `listen`, `admin`, the upstreams and the sinks:
/// POST mirrored (for the form body), values capped at 4 KiB, the redacted paths.
pub const CONFIG: &str = "shadow: {methods: [GET, POST]}\n\
     publish: {max_body_bytes: 4KiB}\n\
     redact:\n  paths: [/card/number, /account/secret, /**/token, /vault]\n";

/// The requests this world sends, as (method, target, extra header lines, body); each gives
/// one published event (a mismatch, or a candidate error for `/chunk`).
pub fn requests() -> Vec<(&'static str, String, Vec<String>, String)> {
    let get = |target: String| ("GET", target, Vec::new(), String::new());
    vec![
        (
            "GET",
            format!(
                "/profile/1?access_token={ACCESS_TOKEN}&email={QUERY_EMAIL}&page=2&e2={QUERY_EMAIL_ENCODED}"
            ),
            vec![
                format!("Authorization: Bearer {BEARER_TOKEN}"),
                format!("Cookie: sid={COOKIE}"),
                format!("X-Client-Assertion: {JWT_REQUEST}"),
                format!("X-User: {HEADER_EMAIL}"),
            ],
            String::new(),
        ),
        get("/text".into()),
        get("/broken".into()),
        get("/trace".into()),
        get("/big".into()),
        get(format!("/users/{PATH_EMAIL}/cards/{PATH_CARD}")),
        get(format!(
            "/users/{PATH_EMAIL_ENCODED}/cards/{PATH_CARD_DASHED}"
        )),
        get(format!("/sessions/jwt={PATH_JWT}")),
        get(format!("/files;access_token={MATRIX_TOKEN}")),
        get("/chunk".into()),
        get("/chunk-token".into()),
        (
            "POST",
            "/login".into(),
            vec!["Content-Type: application/x-www-form-urlencoded".into()],
            format!("user=ann&password={FORM_PASSWORD}"),
        ),
    ]
}

/// The published events of [`requests`].
pub fn exchanges() -> u64 {
    requests().len() as u64
}

fn profile(primary: bool) -> String {
    let mut v = json!({
        "name": "Ann",
        "contact": if primary { BODY_EMAIL_P } else { BODY_EMAIL_C },
        "note": format!("paid with {}", if primary { BODY_CARD_P } else { BODY_CARD_C }),
        "by_email": {KEY_EMAIL: {"visits": if primary { 1 } else { 2 }}},
        "by_card": {KEY_CARD: {"limit": if primary { 100 } else { 200 }}},
        "vault": {VAULT_KEY: if primary { 1 } else { 2 }},
    });
    if primary {
        v["card"] = json!({"number": CARD_NUMBER, "brand": "visa"});
        v["account"] = json!({"secret": ACCOUNT_SECRET, "tier": "gold"});
        v["sessions"] =
            json!([{"id": 1, "token": SESSION_TOKEN_A}, {"id": 2, "token": SESSION_TOKEN_B}]);
        v["pan"] = serde_json::from_str(NUMBER_CARD).unwrap();
    } else {
        v["pan"] = json!(0);
        v["account"] = json!("closed");
        v["sessions"] = json!([{"id": 1, "token": SESSION_TOKEN_A}]);
    }
    v.to_string()
}

/// What an upstream answers to `path` (no query): content type and body. The secondary
/// answers as the primary.
pub fn answer(primary: bool, path: &str) -> (&'static str, String) {
    match path {
        "/profile/1" => ("application/json", profile(primary)),
        "/text" if primary => (
            "application/json",
            json!({"name": "Ann", "card": {"number": TEXT_CARD}, "profile": {"token": TEXT_TOKEN}})
                .to_string(),
        ),
        "/text" => ("text/plain", "Service temporarily unavailable\n".into()),
        "/broken" if primary => ("application/json", json!({"user": {"id": 7}}).to_string()),
        "/broken" => (
            "application/json",
            format!(r#"{{"user": {{"id": 7, "token": "{BROKEN_TOKEN}""#),
        ),
        "/trace" => (
            "message/http",
            format!(
                "GET /trace HTTP/1.1\nHost: svc\nCookie: sid={TRACE_COOKIE}\nX-Hop: {}\n",
                if primary { 1 } else { 2 }
            ),
        ),
        "/big" if primary => ("application/json", format!(r#"{{"n":{}}}"#, &*BIG)),
        "/big" => ("application/json", r#"{"n":1}"#.into()),
        _ => (
            "application/json",
            format!(r#"{{"v":{}}}"#, if primary { 1 } else { 2 }),
        ),
    }
}

/// Headers every answer carries, differing between the sides: a JWT and a link with `?code=`.
pub fn answer_headers(primary: bool) -> Vec<(&'static str, String)> {
    let (jwt, code) = if primary {
        (JWT_PRIMARY, OAUTH_CODE_P)
    } else {
        (JWT_CANDIDATE, OAUTH_CODE_C)
    };
    vec![
        ("x-session", jwt.to_string()),
        (
            "x-link",
            format!("https://idp.example/cb?state=1&code={code}"),
        ),
    ]
}

/// The path of a request target (no query; absolute-form tolerated).
pub fn path_of(target: &str) -> String {
    let p = target.split('?').next().unwrap_or("");
    match p.find("://") {
        Some(i) => p[i + 3..]
            .find('/')
            .map(|j| p[i + 3 + j..].to_string())
            .unwrap_or_default(),
        None => p.to_string(),
    }
}
