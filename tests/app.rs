//! The one wiring (`shadowdiff::app`): settings from a config file reach every component. Real
//! sockets on 127.0.0.1: sample backends, the sidecar, its admin API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{SidecarRun, eventually, get, h1_client, json_backend};

/// Starts a sidecar from a config text (primary and candidate filled in), sends one GET to each
/// of `endpoints` distinct paths, and returns `/api/v1/summary`'s endpoint names once every
/// exchange is counted.
async fn endpoints_seen(extra_yaml: &str, endpoints: usize) -> Vec<String> {
    let primary = json_backend(r#"{"ok":true}"#).await;
    let candidate = json_backend(r#"{"ok":true}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nprimary: {}\ncandidate: {}\n\
         sinks:\n  file: {{path: {}}}\n{extra_yaml}",
        primary.upstream(),
        candidate.upstream(),
        dir.path().join("events.jsonl").display()
    );
    let sidecar = SidecarRun::from_yaml(&yaml).await;
    let client = h1_client();
    for i in 0..endpoints {
        let url = format!("http://{}/ep{i}", sidecar.proxy_addr());
        let (parts, _) = get(&client, &url).await;
        assert_eq!(parts.status, 200);
    }
    let stats = sidecar.stats().clone();
    eventually("every exchange counted", || {
        stats
            .summary(shadowdiff::stats::Window::All, 0)
            .totals
            .exchanges
            >= endpoints as u64
    })
    .await;
    // What QA reads: the admin API's summary.
    let url = format!("http://{}/api/v1/summary?window=all", sidecar.admin_addr());
    let (parts, body) = get(&client, &url).await;
    assert_eq!(parts.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<String> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap().to_string())
        .collect();
    sidecar.stop().await;
    names
}

/// Regression: `grouping.max_endpoints` never reached the statistics, which stayed capped at
/// 201 and folded everything past 200 endpoints into `OTHER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_endpoints_from_the_config_reaches_the_statistics() {
    let names = endpoints_seen("grouping: {max_endpoints: 500}\n", 300).await;
    assert_eq!(names.len(), 300, "every endpoint is its own row");
    assert!(
        !names.iter().any(|n| n == "OTHER"),
        "nothing folded into OTHER"
    );
}

/// The other side of the same setting: past the cap, endpoints fold into one `OTHER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_past_the_cap_fold_into_other() {
    let names = endpoints_seen("grouping: {max_endpoints: 100}\n", 150).await;
    assert_eq!(names.iter().filter(|n| *n == "OTHER").count(), 1);
    assert_eq!(names.len(), 101, "100 endpoints and OTHER");
}
