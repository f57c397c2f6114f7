#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::compare::{Difference, Verdict};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Expected bounds computed independently: the Wilson interval is the set of p with
/// (p̂ − p)² ≤ z²·p(1 − p)/n, i.e. the roots of (1 + z²/n)p² − (2p̂ + z²/n)p + p̂² = 0, solved with
/// the quadratic formula (not the centre ± margin form the code uses). Published tables agree:
/// 0/10 → [0, 0.2775], 5/10 → [0.2366, 0.7634], 50/1000 → [0.0381, 0.0653], 1000/1000 → [0.9962, 1].
#[test]
fn wilson_bounds_match_known_values() {
    let roots = |k: f64, n: f64| {
        let z2 = Z95 * Z95;
        let p = k / n;
        let (a, b, c) = (1.0 + z2 / n, -(2.0 * p + z2 / n), p * p);
        let d = (b * b - 4.0 * a * c).sqrt();
        (
            ((-b - d) / (2.0 * a)).max(0.0),
            ((-b + d) / (2.0 * a)).min(1.0),
        )
    };
    for (k, n, lo, hi) in [
        (0, 10, 0.0, 0.277_532_799_862_889_2),
        (5, 10, 0.236_593_090_512_564, 0.763_406_909_487_436),
        (50, 1000, 0.038_130_262_392_748_8, 0.065_313_820_244_250_82),
        (1000, 1000, 0.996_173_241_514_361_7, 1.0),
        (1, 3, 0.061_491_944_720_396_215, 0.792_340_399_197_952_3),
    ] {
        let (a, b) = wilson95(k, n);
        assert!(
            close(a, lo) && close(b, hi),
            "{k}/{n}: got [{a}, {b}], want [{lo}, {hi}]"
        );
        let (ra, rb) = roots(k as f64, n as f64);
        assert!(
            close(a, ra) && close(b, rb),
            "{k}/{n}: quadratic roots [{ra}, {rb}]"
        );
    }
    assert_eq!(wilson95(0, 0), (0.0, 1.0));
}

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
    let stats = Stats::with_clock(StatsConfig::default(), clock.clone());
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
    let cfg = StatsConfig {
        max_endpoints: 3,
        ..Default::default()
    };
    let stats = Stats::with_clock(cfg, clock);
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
fn window_labels() {
    assert_eq!(Window::parse("15m").unwrap().label(), "15m");
    assert_eq!(Window::parse("60m").unwrap().label(), "1h");
    assert_eq!(Window::parse("90s").unwrap().label(), "90s");
    assert_eq!(Window::parse("all").unwrap(), Window::All);
    assert!(Window::parse("0s").is_err());
    assert!(Window::parse("soon").is_err());
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
