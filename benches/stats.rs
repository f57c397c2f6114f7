//! Cost of recording into the statistics on the comparison workers' hot path.
//!
//! `cargo bench --bench stats` — figures in docs/api.md ("Performance").
//!
//! - `latency_record_three`: one exchange's three latency histograms (primary, candidate, delta).
//! - `observe_match`: a whole `Stats::observe` for a match (the common case), 20 endpoints.
//! - `observe_mismatch_with_event`: a mismatch with two differing fields, a signature and a
//!   published event (clusters, field counts, recent-event ring).
//! - `kafka_stats_observe_match`: the interval statistics publisher's `observe` for a match
//!   (`stats::publisher`: sharded per-endpoint deltas), 20 endpoints; its broker is unreachable
//!   and its interval an hour, so only the recording is measured.
//! - `aggregate_parse_and_merge`: what `shadowdiff aggregate` does per statistics message: parse
//!   a `shadowdiff.stats.v1` message (2 000 exchanges, four histograms) and merge it into `Stats`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use shadowdiff::compare::{DiffKind, Difference, Verdict, VerdictKind};
use shadowdiff::event::{Event, EventRequest, EventResponse, SCHEMA};
use shadowdiff::pipeline::{Observation, Sink};
use shadowdiff::stats::{DEFAULT_MAX_ENDPOINTS, LatencySet, Stats, StatsConfig};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn verdict(kind: VerdictKind) -> Verdict {
    let mut v = Verdict::skipped(shadowdiff::compare::SkipReason::SampledOut);
    v.kind = kind;
    v.skip_reason = None;
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));

    let mut set = LatencySet::new(3);
    let mut i = 0u64;
    g.bench_function("latency_record_three", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let p = Duration::from_micros(800 + (i % 5000));
            let c = Duration::from_micros(700 + (i % 7000));
            set.record(black_box(Some(p)), black_box(Some(c)));
        })
    });

    let stats = Stats::new(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS);
    let endpoints: Vec<String> = (0..20)
        .map(|n| format!("GET /api/v1/resource{n}/{{id}}"))
        .collect();
    let m = verdict(VerdictKind::Match);
    let mut i = 0usize;
    g.bench_function("observe_match", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let o = Observation {
                ts: SystemTime::UNIX_EPOCH,
                endpoint: &endpoints[i % endpoints.len()],
                verdict: &m,
                primary_latency: Some(Duration::from_micros(800 + (i as u64 % 5000))),
                candidate_latency: Some(Duration::from_micros(900 + (i as u64 % 3000))),
                secondary_latency: None,
                send_skew: None,
                event: None,
            };
            stats.observe(black_box(&o));
        })
    });

    let mut mm = verdict(VerdictKind::Mismatch);
    let d = |f: &str| Difference {
        path: f.into(),
        field: f.into(),
        kind: DiffKind::Value,
        primary: serde_json::json!(1),
        candidate: serde_json::json!(2),
        noise: false,
        detail: None,
    };
    mm.differences = vec![d("/items/*/price"), d("/total")];
    mm.signature = Some("3f2a9c1e".into());
    let resp = EventResponse {
        status: Some(200),
        latency_us: Some(1000),
        headers: Default::default(),
        body: serde_json::Value::Null,
        error: None,
    };
    let ev = Arc::new(Event {
        schema: SCHEMA.into(),
        id: "01J0000000".into(),
        ts: String::new(),
        source: "proxy".into(),
        instance: "b".into(),
        endpoint: endpoints[0].clone(),
        request: EventRequest {
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: Default::default(),
            body: serde_json::Value::Null,
        },
        primary: resp.clone(),
        candidate: Some(resp),
        secondary: None,
        verdict: VerdictKind::Mismatch,
        skip_reason: None,
        differences: mm.differences.clone(),
        signature: mm.signature.clone(),
        notes: vec![],
        truncated: false,
        sends: None,
    });
    g.bench_function("observe_mismatch_with_event", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let o = Observation {
                ts: SystemTime::UNIX_EPOCH,
                endpoint: &endpoints[i % endpoints.len()],
                verdict: &mm,
                primary_latency: Some(Duration::from_micros(1000)),
                candidate_latency: Some(Duration::from_micros(1200)),
                secondary_latency: None,
                send_skew: None,
                event: Some(&ev),
            };
            stats.observe(black_box(&o));
        })
    });

    let mut kafka = shadowdiff::sink::kafka::KafkaConfig::default();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    kafka.brokers = format!("127.0.0.1:{port}");
    let mut pc = shadowdiff::stats::publisher::StatsPublisherConfig::new(kafka, "bench");
    pc.kafka.stats_interval = Duration::from_secs(3600);
    let publisher = shadowdiff::stats::publisher::StatsPublisher::start(pc).unwrap();
    g.bench_function("kafka_stats_observe_match", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let o = Observation {
                ts: SystemTime::UNIX_EPOCH,
                endpoint: &endpoints[i % endpoints.len()],
                verdict: &m,
                primary_latency: Some(Duration::from_micros(800 + (i as u64 % 5000))),
                candidate_latency: Some(Duration::from_micros(900 + (i as u64 % 3000))),
                secondary_latency: None,
                send_skew: None,
                event: None,
            };
            publisher.observe(black_box(&o));
        })
    });
    publisher.shutdown(Duration::from_millis(200));

    let mut delta = shadowdiff::stats::IntervalDelta::new();
    for n in 0..2000u64 {
        let v = if n % 10 == 0 { &mm } else { &m };
        delta.record(
            &Observation {
                ts: SystemTime::UNIX_EPOCH,
                endpoint: &endpoints[0],
                verdict: v,
                primary_latency: Some(Duration::from_micros(200 + (n * 7919) % 250_000)),
                candidate_latency: Some(Duration::from_micros(300 + (n * 104_729) % 250_000)),
                secondary_latency: None,
                send_skew: None,
                event: None,
            },
            256,
        );
    }
    let now = SystemTime::now();
    let msg = delta
        .to_message(shadowdiff::stats::MessageHead {
            instance: "bench",
            run: "r",
            seq: 0,
            start: now,
            end: now,
            endpoint: &endpoints[0],
        })
        .unwrap()
        .to_json();
    let merged = Stats::new(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS);
    g.bench_function("aggregate_parse_and_merge", |b| {
        b.iter(|| {
            let p = shadowdiff::stats::StatsMessage::parse(black_box(msg.as_bytes())).unwrap();
            merged.merge_interval(p.end, &p.endpoint, &p.delta);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
