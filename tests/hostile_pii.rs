//! Planted personal data against the real binary (issue 12, hostile suite: "planted PII absent
//! from every surface"). `shadowdiff proxy` runs as a child with `RUST_LOG=trace` and its
//! stderr in a file; the upstreams and requests of `tests/pii/` carry secrets in redacted paths,
//! their parents, arrays, text bodies, query strings, headers, a form body, e-mail addresses,
//! card numbers and JWTs, in JSON keys and in the URL path itself, and a candidate answer the
//! shadow client quotes in its error. No byte of any surface may hold one: the logs at every
//! level, the JSONL event file, `/api/v1/summary`, `/api/v1/mismatches` and each
//! `/api/v1/mismatches/{id}`, signatures, noise and its suggested rules, the gate and
//! `/metrics`; and the events must still say what differed. Kafka's two topics are checked in
//! `tests/kafka.rs`, the review UI in `tests/ui.rs`, the same world in-process in
//! `tests/redaction.rs`.
//!
//! Also here: `shadowdiff diff` prints a comparison of the planted bodies as an event would
//! publish it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pii;

use common::http_get;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

/// Every admin route that serves data, for the routes' own bytes.
const ROUTES: &[&str] = &[
    "/api/v1/summary?window=all&top=100",
    "/api/v1/summary",
    "/api/v1/signatures",
    "/api/v1/noise",
    "/api/v1/noise/rules",
    "/api/v1/gate",
    "/metrics",
];

/// `GET route` must answer 200; its body.
fn get_ok(admin: SocketAddr, route: &str) -> Vec<u8> {
    let (status, body) = http_get(admin, route).unwrap();
    assert_eq!(status, 200, "{route}: {}", String::from_utf8_lossy(&body));
    body
}

#[test]
fn no_planted_secret_reaches_any_surface_of_the_real_binary_logs_at_trace_included() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let sinks = format!("  file: {{path: {}}}\n", events.display());
    let mut proxy = pii::RealProxy::start(dir.path(), &sinks, true, &[("RUST_LOG", "trace")]);
    let admin = proxy.admin;
    proxy.drive_and_wait();

    let mut api = Vec::new();
    let feed = get_ok(admin, "/api/v1/mismatches?limit=100");
    let v: Value = serde_json::from_slice(&feed).unwrap();
    let ids: Vec<&str> = v["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, pii::exchanges());
    for id in ids {
        api.extend(get_ok(admin, &format!("/api/v1/mismatches/{id}")));
    }
    api.extend(feed);
    for route in ROUTES {
        api.extend(get_ok(admin, route));
    }
    let summary = get_ok(admin, ROUTES[0]);
    let metrics = String::from_utf8(get_ok(admin, "/metrics")).unwrap();
    proxy.proc.terminate();
    let logs = std::fs::read(&proxy.proc.log).unwrap();
    let file = std::fs::read(&events).unwrap();
    pii::assert_no_secret("the admin API", &api);
    pii::assert_no_secret("the logs (RUST_LOG=trace)", &logs);
    pii::assert_event_file(&file);
    pii::assert_summary_counts_by_redacted_names(&serde_json::from_slice(&summary).unwrap());
    assert!(
        metrics.contains(r#"endpoint="GET /users/<redacted:email>/cards/{id}""#),
        "the endpoint label is the redacted name"
    );

    // The logs were not quiet: trace was on, and the lines that quote traffic are there,
    // redacted (the shadow client's error on `/chunk`, the endpoint names).
    let logs = String::from_utf8_lossy(&logs);
    assert!(logs.contains("TRACE"), "RUST_LOG=trace had no effect");
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("shadow request failed"))
        .collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("chunk size") && l.contains("<redacted:email>")),
        "{failed:#?}"
    );
    assert!(
        failed.iter().any(|l| l.contains("<withheld:")),
        "{failed:#?}"
    );
}

fn diff(dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .arg("diff")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn diff_prints_the_planted_bodies_as_an_event_publishes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("shadowdiff.yaml"), pii::CONFIG).unwrap();
    for (name, primary, path) in [
        ("p.json", true, "/profile/1"),
        ("c.json", false, "/profile/1"),
        ("pt.json", true, "/text"),
        ("ct.txt", false, "/text"),
    ] {
        std::fs::write(d.join(name), pii::answer(primary, path).1).unwrap();
    }
    // Two raw HTTP answers (`curl -i`), their headers carrying a JWT and a `?code=` link.
    for (name, primary) in [("p.http", true), ("c.http", false)] {
        let mut raw = String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
        for (h, v) in pii::answer_headers(primary) {
            raw.push_str(&format!("{h}: {v}\r\n"));
        }
        raw.push_str(&format!("set-cookie: sid={}\r\n\r\n", pii::COOKIE));
        raw.push_str(&pii::answer(primary, "/profile/1").1);
        std::fs::write(d.join(name), raw).unwrap();
    }
    let config = ["--config", "shadowdiff.yaml"];
    let mut all = Vec::new();
    for (a, b) in [
        ("p.json", "c.json"),
        ("pt.json", "ct.txt"),
        ("p.http", "c.http"),
    ] {
        for json in [true, false] {
            let mut args = vec![a, b];
            args.extend(config);
            if json {
                args.push("--json");
            }
            let o = diff(d, &args);
            pii::assert_no_secret(&format!("diff {}", args.join(" ")), &o.stdout);
            all.extend(o.stdout);
        }
    }
    let all = String::from_utf8(all).unwrap();
    // Still a diff: what differed, where, with the redacted values.
    for shown in [
        r#""path":"/card","field":"/card","kind":"missing","primary":{"brand":"visa","number":"<redacted>"}"#,
        r#""path":"/by_email/<redacted:email>/visits""#,
        "/vault/<redacted>",
        "/contact: \"<redacted:email>\" → \"<redacted:email>\"",
        "\"token\": \"<redacted>\"",
        "+Service temporarily unavailable",
        "@headers/x-link",
        "code=<redacted>",
    ] {
        assert!(all.contains(shown), "{shown} not in:\n{all}");
    }

    // Without --config the defaults apply: the detectors, the always-hidden headers and query
    // names, but no redacted paths (`/account/secret` is the config's).
    let o = diff(d, &["p.json", "c.json", "--json"]);
    let out = String::from_utf8(o.stdout).unwrap();
    for secret in [
        pii::BODY_EMAIL_P,
        pii::KEY_EMAIL,
        pii::CARD_NUMBER,
        pii::BODY_CARD_P,
    ] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    assert!(
        out.contains(pii::ACCOUNT_SECRET),
        "without --config, no redact.paths: {out}"
    );
}
