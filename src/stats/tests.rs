#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::compare::{DiffKind, Difference, SkipReason, Verdict, VerdictKind};
use crate::pipeline::{Observation, Sink};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn verdict(kind: VerdictKind) -> Verdict {
    let mut v = Verdict::skipped(SkipReason::SampledOut);
    v.kind = kind;
    v.skip_reason = None;
    if kind == VerdictKind::Mismatch {
        v.differences = vec![diff("/a", DiffKind::Value, false)];
        v.signature = Some("sig-a".into());
    }
    v
}

fn diff(field: &str, kind: DiffKind, noise: bool) -> Difference {
    Difference {
        path: field.into(),
        field: field.into(),
        kind,
        primary: serde_json::Value::Null,
        candidate: serde_json::Value::Null,
        noise,
        detail: None,
    }
}

fn obs<'a>(endpoint: &'a str, v: &'a Verdict) -> Observation<'a> {
    Observation {
        ts: UNIX_EPOCH,
        endpoint,
        verdict: v,
        primary_latency: Some(Duration::from_millis(10)),
        candidate_latency: Some(Duration::from_millis(12)),
        secondary_latency: None,
        send_skew: None,
        event: None,
    }
}

fn manual() -> (Arc<ManualClock>, Stats) {
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let stats = Stats::with_clock(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS, clock.clone());
    (clock, stats)
}

#[test]
fn window_expiry_keeps_since_start() {
    let (clock, stats) = manual();
    let m = verdict(VerdictKind::Mismatch);
    let ok = verdict(VerdictKind::Match);
    for _ in 0..10 {
        stats.observe(&obs("GET /a", &m));
    }
    clock.advance(Duration::from_secs(10 * 60));
    for _ in 0..30 {
        stats.observe(&obs("GET /a", &ok));
    }
    let w15 = stats.summary(Window::Last(Duration::from_secs(900)), 10);
    assert_eq!(w15.totals.divergence.samples, 40);
    assert_eq!(w15.totals.divergence.divergent, 10);
    // 6 minutes on, the mismatches (now 16 minutes old) have left the 15-minute window.
    clock.advance(Duration::from_secs(6 * 60));
    let w15 = stats.summary(Window::Last(Duration::from_secs(900)), 10);
    assert_eq!(w15.totals.divergence.samples, 30);
    assert_eq!(w15.totals.divergence.divergent, 0);
    assert_eq!(w15.totals.top_fields, vec![]);
    assert_eq!(w15.endpoints[0].stats.latency.primary.count, 30);
    // A 5-minute window no longer holds the matches either (recorded 6 minutes ago).
    let w5 = stats.summary(Window::Last(Duration::from_secs(300)), 10);
    assert_eq!(w5.totals.divergence.samples, 0);
    assert_eq!(w5.totals.divergence.rate, None);
    let all = stats.summary(Window::All, 10);
    assert_eq!(all.totals.divergence.samples, 40);
    assert_eq!(all.totals.divergence.divergent, 10);
    assert_eq!(all.totals.top_fields[0].count, 10);
    // Far in the future the reused ring buckets are reset, not added to.
    clock.advance(Duration::from_secs(3600));
    stats.observe(&obs("GET /a", &ok));
    let w15 = stats.summary(Window::Last(Duration::from_secs(900)), 10);
    assert_eq!(w15.totals.divergence.samples, 1);
    assert!(
        stats
            .check_window(Window::Last(Duration::from_secs(3600)))
            .is_err()
    );
}

#[test]
fn fields_count_once_per_exchange_and_noise_only_when_all_noise() {
    let (_clock, stats) = manual();
    let mut v = verdict(VerdictKind::Mismatch);
    v.differences = vec![
        diff("/items/*/price", DiffKind::Value, false),
        diff("/items/*/price", DiffKind::Value, true),
        diff("/ts", DiffKind::Value, true),
    ];
    stats.observe(&obs("GET /o", &v));
    stats.observe(&obs("GET /o", &v));
    let s = stats.summary(Window::All, 10);
    let f = &s.endpoints[0].stats.top_fields;
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].field.as_str(), f[0].count, f[0].noise),
        ("/items/*/price", 2, 0)
    );
    assert_eq!((f[1].field.as_str(), f[1].count, f[1].noise), ("/ts", 2, 2));
}

#[test]
fn endpoints_are_capped_into_other() {
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH));
    // Two named endpoints, and OTHER on top.
    let stats = Stats::with_clock(StatsConfig::default(), 2, clock);
    let ok = verdict(VerdictKind::Match);
    for i in 0..10 {
        let e = format!("GET /e{i}");
        stats.observe(&obs(&e, &ok));
    }
    let s = stats.summary(Window::All, 10);
    let names: Vec<&str> = s.endpoints.iter().map(|e| e.endpoint.as_str()).collect();
    assert_eq!(names, ["GET /e0", "GET /e1", "OTHER"]);
    assert_eq!(s.endpoints[2].stats.exchanges, 8);
    assert_eq!(s.totals.exchanges, 10);
    assert_eq!(stats.endpoint_count(), 3);
}

#[test]
fn clusters_group_by_signature() {
    let (clock, stats) = manual();
    let m = verdict(VerdictKind::Mismatch);
    stats.observe(&obs("GET /a", &m));
    clock.advance(Duration::from_secs(5));
    stats.observe(&obs("GET /a", &m));
    let sigs = stats.signatures(None);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].count, 2);
    assert_eq!(sigs[0].fields[0].field, "/a");
    assert_ne!(sigs[0].first_seen, sigs[0].last_seen);
    assert!(stats.signatures(Some("GET /b")).is_empty());
}

#[test]
fn concurrent_observers_lose_nothing() {
    let (_clock, stats) = manual();
    let stats = Arc::new(stats);
    let m = verdict(VerdictKind::Mismatch);
    let ok = verdict(VerdictKind::Match);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (stats, m, ok) = (&stats, &m, &ok);
            s.spawn(move || {
                for i in 0..5000 {
                    // Every thread writes to every endpoint, and new endpoints appear concurrently.
                    let e = format!("GET /e{}", (i + t) % 7);
                    let v = if i % 10 == 0 { m } else { ok };
                    stats.observe(&obs(&e, v));
                }
            });
        }
    });
    let s = stats.summary(Window::All, 10);
    assert_eq!(s.endpoints.len(), 7);
    assert_eq!(s.totals.exchanges, 20_000);
    assert_eq!(s.totals.divergence.divergent, 2000);
    assert_eq!(s.totals.latency.primary.count, 20_000);
    assert_eq!(stats.endpoint_count(), 7);
    assert_eq!(
        stats.signatures(None).iter().map(|c| c.count).sum::<u64>(),
        2000
    );
}

/// Observes one match on each of `n` distinct endpoints and returns the summary's endpoint names.
fn endpoints_after(stats: &Stats, n: usize) -> Vec<String> {
    let ok = verdict(VerdictKind::Match);
    for i in 0..n {
        stats.observe(&obs(&format!("GET /e{i:03}"), &ok));
    }
    let s = stats.summary(Window::All, 1);
    assert_eq!(s.totals.exchanges, n as u64);
    s.endpoints.into_iter().map(|e| e.endpoint).collect()
}

/// Regression: `grouping.max_endpoints` never reached the statistics, which stayed capped at 201
/// (200 + OTHER), so with `max_endpoints: 500` everything past the 200th endpoint was counted as
/// `OTHER`.
#[test]
fn grouping_max_endpoints_reaches_the_statistics() {
    let cfg = crate::config::Config::from_yaml(
        std::path::Path::new("shadowdiff.yaml"),
        "grouping: {max_endpoints: 500}\n",
    )
    .unwrap();
    let stats = Stats::new(cfg.stats, cfg.grouping.max_endpoints);
    let names = endpoints_after(&stats, 300);
    assert_eq!(names.len(), 300);
    assert!(!names.iter().any(|n| n == OTHER_ENDPOINT));
}

#[test]
fn endpoints_past_the_cap_fold_into_other() {
    let stats = Stats::new(StatsConfig::default(), 100);
    let names = endpoints_after(&stats, 150);
    // The first 100 keep their own line; the 101st to 150th are one OTHER line.
    assert_eq!(names.len(), 101);
    assert_eq!(names[99], "GET /e099");
    assert_eq!(names[100], OTHER_ENDPOINT);
    let s = stats.summary(Window::All, 1);
    assert_eq!(s.endpoints[100].stats.exchanges, 50);
}

/// The grouping and the statistics share one cap and one `OTHER`: every endpoint the grouping
/// names keeps its own line in the statistics, and its overflow is the statistics' `OTHER`.
#[test]
fn grouping_and_statistics_caps_agree() {
    use crate::ingest::grouping::Grouper;
    let grouper = Grouper::new(
        Arc::new(crate::compare::rules::RuleSet::default()),
        5,
        crate::redact::Redaction::default(),
    );
    let stats = Stats::new(StatsConfig::default(), 5);
    let ok = verdict(VerdictKind::Match);
    for i in 0..8 {
        let e = grouper.endpoint("GET", &format!("/p{i}"));
        stats.observe(&obs(&e, &ok));
    }
    let s = stats.summary(Window::All, 1);
    let names: Vec<&str> = s.endpoints.iter().map(|e| e.endpoint.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /p0", "GET /p1", "GET /p2", "GET /p3", "GET /p4", "OTHER"
        ]
    );
    assert_eq!(s.endpoints[5].stats.exchanges, 3);
}
