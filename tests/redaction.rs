//! Redaction that cannot be bypassed (issue 12, item 3), end to end on real sockets: a sidecar
//! started from a config text (the one wiring, `shadowdiff::app`), backends with secrets planted
//! in every corner of their answers and of the requests (`tests/pii/`), and what the admin
//! server and the file sink publish — the JSONL event file, `/api/v1/mismatches` and
//! `/api/v1/mismatches/{id}` (what the review UI's detail view renders), the summary, signatures,
//! noise and `/metrics`. No planted secret may appear in any of their bytes, and the events must
//! still say what differed, and where. The real binary, its logs and Kafka:
//! `tests/hostile_pii.rs` and `tests/kafka.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pii;

use common::{eventually, get, h1_client};
use serde_json::Value;
use shadowdiff::app::{Settings, Sidecar};
use shadowdiff::config::Config;
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_the_event_file_or_the_api_and_the_events_stay_useful() {
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let sinks = format!("  file: {{path: {}}}\n", events_path.display());
    let yaml = pii::config_text("127.0.0.1:0", "127.0.0.1:0", &sinks, true);
    let config = Config::from_yaml(Path::new("redaction.yaml"), &yaml).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sidecar = Sidecar::start(Settings::load(config).unwrap(), async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let proxy = sidecar.proxy_addr();
    tokio::task::spawn_blocking(move || pii::drive(proxy))
        .await
        .unwrap();
    let stats = sidecar.stats().clone();
    eventually("every exchange compared", || {
        stats
            .summary(shadowdiff::stats::Window::All, 0)
            .totals
            .exchanges
            >= pii::exchanges()
    })
    .await;

    // What the review UI reads: the feed, then each event's detail view; and the counts.
    let client = h1_client();
    let admin = sidecar.admin_addr();
    let mut api_bytes = Vec::new();
    let (parts, feed) = get(
        &client,
        &format!("http://{admin}/api/v1/mismatches?limit=100"),
    )
    .await;
    assert_eq!(parts.status, 200);
    api_bytes.extend_from_slice(&feed);
    let feed: Value = serde_json::from_slice(&feed).unwrap();
    let ids: Vec<String> = feed["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len() as u64, pii::exchanges(), "{feed:#}");
    let mut routes: Vec<String> = ids
        .iter()
        .map(|id| format!("/api/v1/mismatches/{id}"))
        .collect();
    routes.extend(
        [
            "/api/v1/summary?window=all&top=100",
            "/api/v1/signatures",
            "/api/v1/noise",
            "/metrics",
        ]
        .map(String::from),
    );
    let mut summary = Value::Null;
    for route in &routes {
        let (parts, body) = get(&client, &format!("http://{admin}{route}")).await;
        assert_eq!(parts.status, 200, "{route}");
        if route.starts_with("/api/v1/summary") {
            summary = serde_json::from_slice(&body).unwrap();
        }
        api_bytes.extend_from_slice(&body);
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), sidecar.join())
        .await
        .expect("sidecar did not stop")
        .unwrap();
    let file = std::fs::read(&events_path).unwrap();
    pii::assert_no_secret("the admin API", &api_bytes);
    pii::assert_summary_counts_by_redacted_names(&summary);
    pii::assert_event_file(&file);
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
