//! The checks on what a run of the planted world published: no secret in any byte, and the
//! events and statistics still say what differed, and where.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use super::{BIG, SECRETS, exchanges};
use serde_json::{Value, json};

/// No planted secret in any byte of `bytes` (what `what` names), and the 200,000-digit number
/// nowhere past the cap.
#[track_caller]
pub fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into {what}:\n…{}…",
            excerpt_around(&text, secret)
        );
    }
    assert!(
        !text.contains(&BIG[..5000]),
        "the big number was published past the cap in {what}"
    );
}

fn excerpt_around(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let from = text.floor_char_boundary(i.saturating_sub(300));
    let to = text.floor_char_boundary((i + needle.len() + 300).min(text.len()));
    text[from..to].to_string()
}

/// The JSONL event file of a run of [`requests`]: no secret in it, and its events useful.
#[track_caller]
pub fn assert_event_file(file: &[u8]) {
    assert_no_secret("the event file", file);
    let events: Vec<Value> = String::from_utf8_lossy(file)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_events_say_what_differed(&events);
}

/// The published events of [`requests`] still say what differed, and where.
#[track_caller]
pub fn assert_events_say_what_differed(events: &[Value]) {
    assert_eq!(events.len() as u64, exchanges(), "one event per request");
    let by_path = |p: &str| -> &Value {
        events
            .iter()
            .find(|e| e["request"]["path"] == p)
            .unwrap_or_else(|| {
                let paths: Vec<&Value> = events.iter().map(|e| &e["request"]["path"]).collect();
                panic!("no event for {p} among {paths:?}")
            })
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
        ("@headers/x-link", "header"),
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
        diff(profile, "@headers/x-link")["candidate"],
        json!("https://idp.example/cb?state=1&code=<redacted>")
    );
    assert_eq!(
        profile["request"]["query"],
        json!("access_token=<redacted>&email=<redacted:email>&page=2&e2=<redacted:email>")
    );
    let headers = &profile["request"]["headers"];
    assert_eq!(headers["authorization"], json!("<redacted>"));
    assert_eq!(headers["cookie"], json!("<redacted>"));
    assert_eq!(headers["x-client-assertion"], json!("<redacted:bearer>"));
    assert_eq!(headers["x-user"], json!("<redacted:email>"));

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

    // Secrets in the URL path: the path and the endpoint name are redacted, the difference kept.
    for (path, endpoint) in [
        (
            "/users/<redacted:email>/cards/<redacted:card>",
            "GET /users/<redacted:email>/cards/{id}",
        ),
        (
            "/users/<redacted:email>/cards/<redacted:card>",
            "GET /users/<redacted:email>/cards/<redacted:card>",
        ),
        (
            "/sessions/jwt=<redacted:bearer>",
            "GET /sessions/jwt=<redacted:bearer>",
        ),
        (
            "/files;access_token=<redacted>",
            "GET /files;access_token=<redacted>",
        ),
    ] {
        let e = events
            .iter()
            .find(|e| e["request"]["path"] == path && e["endpoint"] == endpoint)
            .unwrap_or_else(|| panic!("no event for {endpoint} at {path}"));
        assert!(kinds(e).contains(&("/v".to_string(), "value".to_string())));
    }

    // The candidate's unparseable answer: a candidate error whose message is redacted.
    let chunk = by_path("/chunk");
    assert_eq!(chunk["verdict"], "candidate_error");
    let error = chunk["candidate"]["error"].as_str().unwrap();
    assert!(
        error.contains("chunk size") && error.contains("<redacted:email>"),
        "{error}"
    );

    // ... and one that quotes a redacted key's value: withheld whole.
    let error = by_path("/chunk-token")["candidate"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.starts_with("<withheld:"), "{error}");

    // The form body: the password's value hidden, the rest shown.
    let login = by_path("/login");
    assert_eq!(
        login["request"]["body"],
        json!("user=ann&password=<redacted>")
    );
}

/// `/api/v1/summary?window=all&top=100`: counts by the redacted names — the endpoints with
/// personal data in their path, and the fields holding it or lying below a redacted node.
#[track_caller]
pub fn assert_summary_counts_by_redacted_names(summary: &Value) {
    assert_eq!(summary["totals"]["exchanges"].as_u64(), Some(exchanges()));
    let endpoints: Vec<&str> = summary["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    for e in [
        "GET /users/<redacted:email>/cards/{id}",
        "GET /users/<redacted:email>/cards/<redacted:card>",
        "GET /sessions/jwt=<redacted:bearer>",
        "GET /files;access_token=<redacted>",
    ] {
        assert!(endpoints.contains(&e), "{e} not among {endpoints:#?}");
    }
    let fields: Vec<&str> = summary["totals"]["top_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in [
        "/by_email/<redacted:email>/visits",
        "/by_card/<redacted:card>/limit",
        "/vault/<redacted>",
    ] {
        assert!(fields.contains(&f), "{f} not among {fields:#?}");
    }
}
