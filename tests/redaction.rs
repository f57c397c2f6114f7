//! Redaction that cannot be bypassed (issue 12, item 3), end to end on real sockets: a sidecar
//! started from a config text (the one wiring, `shadowdiff::app`), backends with secrets planted
//! in every corner of their answers and of the requests, and the three places events are read —
//! the JSONL event file, `/api/v1/mismatches` and `/api/v1/mismatches/{id}` (what the review
//! UI's detail view renders). No planted secret may appear in any of their bytes, and the events
//! must still say what differed, and where.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Body, backend, eventually, full, get, h1_client, send};
use http::{Request, Response};
use serde_json::{Value, json};
use shadowdiff::app::{Settings, Sidecar};
use shadowdiff::config::Config;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

// Under `redact.paths`.
const CARD_NUMBER: &str = "4000-0566-5566-5556"; // under /card/number; the parent goes missing
const ACCOUNT_SECRET: &str = "acct-SECRET-7731"; // under /account/secret; /account changes type
const SESSION_TOKEN_A: &str = "sess-TOKEN-AAA"; // /**/token in an array of objects
const SESSION_TOKEN_B: &str = "sess-TOKEN-BBB"; // ... in the element the candidate drops
const TEXT_TOKEN: &str = "prof-TOKEN-CCC"; // /**/token in JSON answered by text
const TEXT_CARD: &str = "4000-0000-0000-0077"; // /card/number in JSON answered by text
// Query strings.
const ACCESS_TOKEN: &str = "qry-ACCESS-TOKEN-DDD";
const QUERY_EMAIL: &str = "ann.query@example.com";
// Headers.
const BEARER_TOKEN: &str = "auth-BEARER-EEE";
const COOKIE: &str = "cookie-FFF";
const JWT_REQUEST: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZXEifQ.cmVxLXNpZ25hdHVyZQ";
const JWT_PRIMARY: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcmkifQ.cHJpLXNpZ25hdHVyZQ";
const JWT_CANDIDATE: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW4ifQ.Y2FuLXNpZ25hdHVyZQ";
const TRACE_COOKIE: &str = "trace-COOKIE-GGG"; // a Cookie line in a text diff of headers
// Detectors, in body strings, in JSON keys and in the URL path.
const BODY_EMAIL_P: &str = "ann.body@example.com";
const BODY_EMAIL_C: &str = "ann.cand@example.com";
const BODY_CARD_P: &str = "5555 5555 5555 4444";
const BODY_CARD_C: &str = "4242-4242-4242-4242";
const KEY_EMAIL: &str = "ann.key@example.com";
const KEY_CARD: &str = "4012888888881881";
const PATH_EMAIL: &str = "ann.path@example.com";
const PATH_CARD: &str = "5105105105105100";
const NUMBER_CARD: &str = "378282246310005"; // a card written as a JSON number
const QUERY_EMAIL_ENCODED: &str = "bob.enc%40example.com";
// A candidate answering broken JSON that holds a redacted key's value.
const BROKEN_TOKEN: &str = "brk-TOKEN-HHH";
// A key below a redacted node (/vault): part of its value.
const VAULT_KEY: &str = "vk-KEYNAME-III";

/// 200,000 digits: published whole, it would bypass `publish.max_body_bytes`.
static BIG: LazyLock<String> = LazyLock::new(|| "1234567890".repeat(20_000));

const SECRETS: &[&str] = &[
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
    JWT_REQUEST,
    JWT_PRIMARY,
    JWT_CANDIDATE,
    // The parts of a JWT are secrets on their own (the payload above all).
    "eyJzdWIiOiJyZXEifQ",
    "eyJzdWIiOiJwcmkifQ",
    "eyJzdWIiOiJjYW4ifQ",
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
    NUMBER_CARD,
    "bob.enc",
    BROKEN_TOKEN,
    VAULT_KEY,
];

fn profile(primary: bool) -> String {
    let shared = json!({
        "name": "Ann",
        "contact": if primary { BODY_EMAIL_P } else { BODY_EMAIL_C },
        "note": format!("paid with {}", if primary { BODY_CARD_P } else { BODY_CARD_C }),
        "by_email": {KEY_EMAIL: {"visits": if primary { 1 } else { 2 }}},
        "by_card": {KEY_CARD: {"limit": if primary { 100 } else { 200 }}},
        "vault": {VAULT_KEY: if primary { 1 } else { 2 }},
    });
    let mut v = shared;
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

fn answer(primary: bool, path: &str) -> Response<Body> {
    let (ct, body): (&str, String) = match path {
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
    };
    Response::builder()
        .header("content-type", ct)
        .header(
            "x-session",
            if primary { JWT_PRIMARY } else { JWT_CANDIDATE },
        )
        .body(full(body))
        .unwrap()
}

fn path_of(uri: &str) -> String {
    let p = uri.split('?').next().unwrap_or("");
    // Absolute-form URIs are not expected from the proxy, but be lenient.
    match p.find("://") {
        Some(i) => p[i + 3..]
            .find('/')
            .map(|j| p[i + 3 + j..].to_string())
            .unwrap_or_default(),
        None => p.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_the_event_file_or_the_api_and_the_events_stay_useful() {
    let primary = backend(|r| async move { answer(true, &path_of(&r.uri)) }).await;
    let candidate = backend(|r| async move { answer(false, &path_of(&r.uri)) }).await;
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nprimary: {}\ncandidate: {}\n\
         sinks:\n  file: {{path: {}}}\n\
         publish: {{max_body_bytes: 4KiB}}\n\
         redact:\n  paths: [/card/number, /account/secret, /**/token, /vault]\n",
        primary.upstream(),
        candidate.upstream(),
        events_path.display()
    );
    let config = Config::from_yaml(Path::new("redaction.yaml"), &yaml).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sidecar = Sidecar::start(Settings::load(config).unwrap(), async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let client = h1_client();
    let url = |p: &str| format!("http://{}{p}", sidecar.proxy_addr());

    let req = Request::get(url(&format!(
        "/profile/1?access_token={ACCESS_TOKEN}&email={QUERY_EMAIL}&page=2&e2={QUERY_EMAIL_ENCODED}"
    )))
    .header("authorization", format!("Bearer {BEARER_TOKEN}"))
    .header("cookie", format!("sid={COOKIE}"))
    .header("x-client-assertion", JWT_REQUEST)
    .body(full(""))
    .unwrap();
    let (parts, _) = send(&client, req).await;
    assert_eq!(parts.status, 200);
    for p in [
        "/text".to_string(),
        "/broken".to_string(),
        "/trace".to_string(),
        "/big".to_string(),
        format!("/users/{PATH_EMAIL}/cards/{PATH_CARD}"),
    ] {
        let (parts, _) = get(&client, &url(&p)).await;
        assert_eq!(parts.status, 200, "{p}");
    }
    const EXCHANGES: u64 = 6;
    let stats = sidecar.stats().clone();
    eventually("every exchange compared", || {
        stats
            .summary(shadowdiff::stats::Window::All, 0)
            .totals
            .exchanges
            >= EXCHANGES
    })
    .await;

    // What the review UI reads: the feed, then each event's detail view.
    let admin = sidecar.admin_addr();
    let (parts, feed) = get(
        &client,
        &format!("http://{admin}/api/v1/mismatches?limit=100"),
    )
    .await;
    assert_eq!(parts.status, 200);
    let mut api_bytes = feed.to_vec();
    let feed: Value = serde_json::from_slice(&feed).unwrap();
    let ids: Vec<String> = feed["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len() as u64, EXCHANGES, "{feed:#}");
    for id in &ids {
        let (parts, one) = get(&client, &format!("http://{admin}/api/v1/mismatches/{id}")).await;
        assert_eq!(parts.status, 200);
        api_bytes.extend_from_slice(&one);
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), sidecar.join())
        .await
        .expect("sidecar did not stop")
        .unwrap();
    let file = std::fs::read(&events_path).unwrap();

    for (what, bytes) in [("event file", &file), ("admin API", &api_bytes)] {
        let text = String::from_utf8_lossy(bytes);
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{secret:?} leaked into the {what}:\n{}",
                excerpt_around(&text, secret)
            );
        }
        // The 200,000-digit number: capped by publish.max_body_bytes wherever it appears.
        assert!(
            !text.contains(&BIG[..5000]),
            "the big number was published past the cap in the {what}"
        );
    }

    // Still useful: every exchange is there, with what differed and where.
    let events: Vec<Value> = String::from_utf8(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len() as u64, EXCHANGES);
    let by_path = |p: &str| -> &Value {
        events
            .iter()
            .find(|e| e["request"]["path"] == p)
            .unwrap_or_else(|| panic!("no event for {p}"))
    };
    let kinds = |e: &Value| -> Vec<(String, String)> {
        e["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["path"].as_str().unwrap().to_string(),
                    d["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let diff = |e: &Value, path: &str| -> Value {
        e["differences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no difference at {path}: {:#?}", kinds(e)))
    };

    let profile = by_path("/profile/1");
    let k = kinds(profile);
    for (path, kind) in [
        ("/card", "missing"),
        ("/account", "type"),
        ("/sessions/1", "missing"),
        ("/sessions", "length"),
        ("/contact", "value"),
        ("/note", "value"),
        ("/by_email/<redacted:email>/visits", "value"),
        ("/by_card/<redacted:card>/limit", "value"),
        ("@headers/x-session", "header"),
        ("/pan", "value"),
        ("/vault/<redacted>", "value"),
    ] {
        assert!(
            k.contains(&(path.to_string(), kind.to_string())),
            "{path} {kind} missing from {k:#?}"
        );
    }
    assert_eq!(
        diff(profile, "/card")["primary"],
        json!({"number": "<redacted>", "brand": "visa"})
    );
    assert_eq!(
        diff(profile, "/account")["primary"],
        json!({"secret": "<redacted>", "tier": "gold"})
    );
    assert_eq!(
        diff(profile, "/sessions/1")["primary"],
        json!({"id": 2, "token": "<redacted>"})
    );
    assert_eq!(
        diff(profile, "/contact")["primary"],
        json!("<redacted:email>")
    );
    assert_eq!(
        diff(profile, "/note")["candidate"],
        json!("paid with <redacted:card>")
    );
    assert_eq!(
        diff(profile, "@headers/x-session")["primary"],
        json!("<redacted:bearer>")
    );
    assert_eq!(
        profile["request"]["query"],
        json!("access_token=<redacted>&email=<redacted:email>&page=2&e2=<redacted:email>")
    );
    assert_eq!(
        profile["request"]["headers"]["authorization"],
        json!("<redacted>")
    );
    assert_eq!(profile["request"]["headers"]["cookie"], json!("<redacted>"));
    assert_eq!(
        profile["request"]["headers"]["x-client-assertion"],
        json!("<redacted:bearer>")
    );

    // JSON answered by text: one root body difference whose excerpt shows the redacted JSON.
    let text = by_path("/text");
    assert!(kinds(text).contains(&(String::new(), "body".to_string())));
    let detail = diff(text, "")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("-  \"name\": \"Ann\""), "{detail}");
    assert!(detail.contains("\"token\": \"<redacted>\""), "{detail}");
    assert!(
        detail.contains("+Service temporarily unavailable"),
        "{detail}"
    );

    // Broken JSON mentioning a redacted key is withheld whole; the difference stays.
    let broken = by_path("/broken");
    assert!(
        broken["candidate"]["body"]
            .as_str()
            .unwrap()
            .starts_with("<withheld:"),
        "{broken:#}"
    );
    assert!(kinds(broken).contains(&(String::new(), "body".to_string())));

    // A text diff of headers keeps the header names and the lines that differ.
    let trace = by_path("/trace");
    let detail = diff(trace, "")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains(" Cookie: <redacted>"), "{detail}");
    assert!(detail.contains("+X-Hop: 2"), "{detail}");

    let big = by_path("/big");
    let n = diff(big, "/n");
    assert_eq!(n["kind"], "value");
    assert_eq!(n["candidate"], json!(1));

    let user = by_path("/users/<redacted:email>/cards/<redacted:card>");
    assert!(kinds(user).contains(&("/v".to_string(), "value".to_string())));
    assert_eq!(user["endpoint"], "GET /users/<redacted:email>/cards/{id}");
}

/// The fuzz target's property (`shadowdiff::event::planted`) over every input of the committed
/// corpus, so CI checks it on stable without a fuzzer.
#[test]
fn the_fuzz_corpus_replays_without_a_leak() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/redact");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut total = shadowdiff::event::planted::Exercised::default();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        match shadowdiff::event::planted::check(&data) {
            Ok(e) => {
                total.planted += e.planted;
                total.differences += e.differences;
                total.body_differences += e.body_differences;
            }
            Err(leak) => panic!("{}: {leak}", f.display()),
        }
    }
    assert!(files.len() >= 20, "only {} corpus files", files.len());
    // Not vacuous: secrets were planted and differences, text ones included, published.
    assert!(
        total.planted > 100 && total.differences > 50 && total.body_differences > 0,
        "{total:?}"
    );
}

fn excerpt_around(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let from = text.floor_char_boundary(i.saturating_sub(200));
    let to = text.floor_char_boundary((i + needle.len() + 200).min(text.len()));
    text[from..to].to_string()
}
