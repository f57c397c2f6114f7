use super::*;
use crate::compare::{Difference, Verdict};
use crate::pipeline::Sink;
use crate::stats::{DEFAULT_MAX_ENDPOINTS, StatsConfig, Window};
use std::time::Duration;

fn diff(field: &str, kind: DiffKind, noise: bool) -> Difference {
    Difference {
        path: field.replace('*', "0"),
        field: field.into(),
        kind,
        primary: serde_json::json!(1),
        candidate: serde_json::json!(2),
        noise,
        detail: None,
    }
}

/// A deterministic traffic mix: verdicts of every kind, skips, repeated and noisy fields, and
/// latencies (µs) spread over four decades with the candidate sometimes faster, sometimes slower.
fn traffic() -> Vec<(Verdict, Option<Duration>, Option<Duration>)> {
    let mut out = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..2000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let p = 100 + x % 250_000;
        let c = (p as i64 + (x >> 20) as i64 % 40_000 - 20_000).max(1) as u64;
        let mut v = Verdict::skipped(SkipReason::SampledOut);
        v.skip_reason = None;
        v.kind = match i % 10 {
            0 | 1 => VerdictKind::Mismatch,
            2 => VerdictKind::Noise,
            3 => VerdictKind::CandidateError,
            4 => VerdictKind::Skipped,
            _ => VerdictKind::Match,
        };
        let (mut pl, mut cl) = (
            Some(Duration::from_micros(p)),
            Some(Duration::from_micros(c)),
        );
        match v.kind {
            VerdictKind::Mismatch => {
                v.differences = vec![
                    diff("/items/*/price", DiffKind::Value, false),
                    diff("/items/*/price", DiffKind::Value, i % 4 == 0),
                    diff("/total", DiffKind::Type, false),
                ];
                v.signature = Some(crate::compare::signature(&v.differences));
            }
            VerdictKind::Noise => {
                v.differences = vec![diff("/ts", DiffKind::Value, true)];
                v.signature = Some(crate::compare::signature(&v.differences));
            }
            VerdictKind::CandidateError => cl = None,
            VerdictKind::Skipped => {
                v.skip_reason = Some(if i % 20 == 4 {
                    SkipReason::MethodNotMirrored
                } else {
                    SkipReason::SampledOut
                });
                cl = None;
                if i % 40 == 4 {
                    pl = None;
                }
            }
            _ => {}
        }
        out.push((v, pl, cl));
    }
    out
}

fn obs<'a>(
    endpoint: &'a str,
    (v, p, c): &'a (Verdict, Option<Duration>, Option<Duration>),
) -> Observation<'a> {
    Observation {
        ts: SystemTime::now(),
        endpoint,
        verdict: v,
        primary_latency: *p,
        candidate_latency: *c,
        secondary_latency: None,
        send_skew: None,
        event: None,
    }
}

fn head(seq: u64, endpoint: &str) -> MessageHead<'_> {
    let end = SystemTime::now();
    MessageHead {
        instance: "sidecar-a",
        run: "r1",
        seq,
        start: end - Duration::from_secs(10),
        end,
        endpoint,
    }
}

fn quantiles(h: &Histogram<u64>) -> Vec<u64> {
    [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0]
        .iter()
        .map(|q| h.value_at_quantile(*q))
        .chain([h.len(), h.max(), h.min()])
        .collect()
}

#[test]
fn a_stats_message_round_trips_counts_fields_and_histograms() {
    let t = traffic();
    let mut d = IntervalDelta::new();
    for x in &t {
        d.record(&obs("GET /a", x), 256);
    }
    let msg = d.to_message(head(7, "GET /a")).unwrap();
    let json = msg.to_json();
    assert!(json.contains(r#""schema":"shadowdiff.stats.v1""#), "{json}");
    // Compact on the wire: 2000 exchanges over four decades of latency fit in a few KiB.
    eprintln!("stats message: {} bytes", json.len());
    assert!(json.len() < 16 << 10, "{} bytes", json.len());
    // The histograms are the standard V2 compressed encoding ("HISTFAAA..." in base64).
    let l = msg.latency.as_ref().unwrap();
    assert!(l.primary.starts_with("HISTF"), "{}", l.primary);
    let parsed = StatsMessage::parse(json.as_bytes()).unwrap();
    assert_eq!(
        (parsed.instance.as_str(), parsed.run.as_str(), parsed.seq),
        ("sidecar-a", "r1", 7)
    );
    assert_eq!(parsed.endpoint, "GET /a");
    let back = parsed.delta;
    assert_eq!(back.counts, d.counts);
    assert_eq!(back.fields.top(100), d.fields.top(100));
    assert_eq!(back.exchanges(), 2000);
    assert_eq!(back.verdict(VerdictKind::Mismatch), 400);
    let (a, b) = (d.latency().unwrap(), back.latency().unwrap());
    for (x, y) in [
        (&a.primary, &b.primary),
        (&a.candidate, &b.candidate),
        (&a.delta_pos, &b.delta_pos),
        (&a.delta_neg, &b.delta_neg),
    ] {
        assert!(!x.is_empty());
        assert_eq!(quantiles(x), quantiles(y));
    }
    assert_eq!(
        (a.primary_sum_us, a.candidate_sum_us),
        (b.primary_sum_us, b.candidate_sum_us)
    );
    assert_eq!(a.summary(), b.summary());
}

/// Merging published intervals gives the figures a sidecar computes by observing directly.
#[test]
fn merged_intervals_equal_direct_observation() {
    let t = traffic();
    let direct = Stats::new(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS);
    let merged = Stats::new(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS);
    // Two endpoints, each split over three intervals (three messages), in any order.
    let mut msgs = Vec::new();
    for (e, part) in [("GET /a", 0), ("GET /b", 1)] {
        for chunk in t.chunks(700) {
            let mut d = IntervalDelta::new();
            for (i, x) in chunk.iter().enumerate() {
                if i % 2 == part {
                    direct.observe(&obs(e, x));
                    d.record(&obs(e, x), 256);
                }
            }
            msgs.push(d.to_message(head(msgs.len() as u64, e)).unwrap().to_json());
        }
    }
    msgs.reverse();
    for m in &msgs {
        let p = StatsMessage::parse(m.as_bytes()).unwrap();
        merged.merge_interval(p.end, &p.endpoint, &p.delta);
    }
    for w in [Window::All, Window::Last(Duration::from_secs(900))] {
        let (x, y) = (direct.summary(w, 50), merged.summary(w, 50));
        assert_eq!(x.totals, y.totals, "{w:?}");
        assert_eq!(x.endpoints, y.endpoints, "{w:?}");
        assert_eq!(x.totals.exchanges, 2000);
        let p = crate::stats::GateParams::default();
        assert_eq!(direct.gate(w, &p), merged.gate(w, &p));
    }
    // Counts only: the merged side has no clusters until events arrive.
    assert!(merged.signatures(None).is_empty());
}

#[test]
fn an_interval_older_than_the_window_counts_only_in_the_totals() {
    let s = Stats::new(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS);
    let t = traffic();
    let mut d = IntervalDelta::new();
    for x in &t[..100] {
        d.record(&obs("GET /a", x), 256);
    }
    s.merge_interval(SystemTime::now() - Duration::from_secs(3600), "GET /a", &d);
    assert_eq!(s.summary(Window::All, 5).totals.exchanges, 100);
    assert_eq!(
        s.summary(Window::Last(Duration::from_secs(900)), 5)
            .totals
            .exchanges,
        0
    );
    // A sidecar clock ahead of ours lands in the current bucket, not in the future.
    s.merge_interval(SystemTime::now() + Duration::from_secs(3600), "GET /a", &d);
    assert_eq!(
        s.summary(Window::Last(Duration::from_secs(60)), 5)
            .totals
            .exchanges,
        100
    );
}

#[test]
fn record_event_clusters_and_lists_without_counting() {
    let s = Stats::new(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS);
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    // Out of order: the feed must still be newest first.
    for (n, secs) in [(0u32, 5u64), (1, 1), (2, 9), (3, 3)] {
        let ts = base + Duration::from_secs(secs);
        let mut ev = crate::sink::kafka::testing::sample_event(
            &crate::exchange::new_id(ts),
            "GET /orders/{id}",
            10,
        );
        ev.ts = format_ts(ts);
        ev.instance = format!("i{n}");
        s.record_event(Arc::new(ev));
    }
    let sigs = s.signatures(None);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].count, 4);
    assert_eq!(sigs[0].first_seen, format_ts(base + Duration::from_secs(1)));
    assert_eq!(sigs[0].last_seen, format_ts(base + Duration::from_secs(9)));
    let feed: Vec<String> = s
        .mismatches(&crate::stats::MismatchQuery::default())
        .iter()
        .map(|e| e.instance.clone())
        .collect();
    assert_eq!(feed, ["i2", "i0", "i3", "i1"]);
    assert_eq!(s.summary(Window::All, 5).totals.exchanges, 0);
}

#[test]
fn malformed_messages_are_refused_with_a_reason() {
    let mut d = IntervalDelta::new();
    let t = traffic();
    d.record(&obs("GET /a", &t[5]), 256);
    let good = d.to_message(head(1, "GET /a")).unwrap();
    let err = |m: StatsMessage| StatsMessage::parse(m.to_json().as_bytes()).unwrap_err();

    let mut m = good.clone();
    m.schema = "shadowdiff.stats.v9".into();
    assert!(matches!(err(m), StatsMessageError::Schema(_)));
    let mut m = good.clone();
    m.verdicts.insert("maybe".into(), 1);
    assert_eq!(err(m), StatsMessageError::Verdict("maybe".into()));
    let mut m = good.clone();
    m.end = "yesterday".into();
    assert!(matches!(err(m), StatsMessageError::Timestamp(_)));
    let mut m = good.clone();
    if let Some(l) = &mut m.latency {
        l.candidate = "not base64!".into();
    }
    assert!(matches!(err(m), StatsMessageError::Histogram(_)));
    // A histogram holding values beyond 60 s cannot be merged: refused, not silently clipped.
    let mut m = good.clone();
    let mut big = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    big.record(3_000_000_000).unwrap();
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&big, &mut buf)
        .unwrap();
    if let Some(l) = &mut m.latency {
        l.primary = B64.encode(buf);
    }
    assert!(matches!(err(m), StatsMessageError::Histogram(_)));
    assert!(matches!(
        StatsMessage::parse(b"{\"schema\":1}").unwrap_err(),
        StatsMessageError::Json(_)
    ));
    assert!(StatsMessage::parse(good.to_json().as_bytes()).is_ok());
}
