//! The interval statistics publisher against librdkafka's mock cluster: what it says it
//! delivered is read back by a separate consumer and must add up to what it observed, through a
//! broker outage too (failed messages are re-sent unchanged; the reader drops copies by
//! `(instance, run, seq)`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "kafka/harness.rs"]
mod harness;

use harness::wait_until;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use shadowdiff::compare::{SkipReason, Verdict, VerdictKind};
use shadowdiff::pipeline::{Observation, Sink};
use shadowdiff::sink::kafka::KafkaConfig;
use shadowdiff::stats::StatsMessage;
use shadowdiff::stats::publisher::{StatsPublisher, StatsPublisherConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

const TOPIC: &str = "shadowdiff.stats";

fn publisher(brokers: &str, interval: Duration) -> StatsPublisher {
    let kafka = KafkaConfig {
        brokers: brokers.into(),
        delivery_timeout: Duration::from_secs(2),
        stats_interval: interval,
        ..KafkaConfig::default()
    };
    StatsPublisher::start(StatsPublisherConfig::new(kafka, "pub-test")).unwrap()
}

/// `n` observations on `endpoint`: every fifth a mismatch, the rest matches.
fn feed(p: &StatsPublisher, endpoint: &str, n: u64) {
    let mut v = Verdict::skipped(SkipReason::SampledOut);
    v.skip_reason = None;
    for i in 0..n {
        v.kind = if i % 5 == 0 {
            VerdictKind::Mismatch
        } else {
            VerdictKind::Match
        };
        p.observe(&Observation {
            ts: SystemTime::now(),
            endpoint,
            verdict: &v,
            primary_latency: Some(Duration::from_micros(1000 + i)),
            candidate_latency: Some(Duration::from_micros(900 + 2 * i)),
            secondary_latency: None,
            send_skew: None,
            event: None,
        });
    }
}

/// Reads the topic from the beginning until it has been quiet for a second (at least `min`
/// messages); returns endpoint → (exchanges, mismatches, latency count) over distinct
/// messages, and how many copies were seen.
fn read_back(brokers: &str, min: usize) -> (BTreeMap<String, (u64, u64, u64)>, usize) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("read-{}", rand::random::<u64>()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let mut seen = BTreeSet::new();
    let mut copies = 0;
    let mut out: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let p = StatsMessage::parse(m.payload().unwrap()).unwrap();
                assert_eq!(m.key(), Some(p.endpoint.as_bytes()), "keyed by endpoint");
                if !seen.insert((p.instance.clone(), p.run.clone(), p.seq)) {
                    copies += 1;
                    continue;
                }
                let e = out.entry(p.endpoint.clone()).or_default();
                e.0 += p.delta.exchanges();
                e.1 += p.delta.verdict(VerdictKind::Mismatch);
                e.2 += p.delta.latency().map_or(0, |l| l.primary.len());
            }
            _ if seen.len() >= min && last.elapsed() > Duration::from_secs(1) => break,
            _ => {}
        }
    }
    (out, copies)
}

#[test]
fn published_intervals_add_up_to_what_was_observed() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let p = publisher(&brokers, Duration::from_millis(200));
    feed(&p, "GET /a", 500);
    feed(&p, "GET /b", 100);
    wait_until(30, "a first interval delivered", || {
        p.stats().delivered >= 2
    });
    feed(&p, "GET /a", 250);
    // The last interval goes out at shutdown.
    p.shutdown(Duration::from_secs(8));
    let s = p.stats();
    eprintln!("publisher: {s:?}");
    assert!(s.balanced(), "{s:?}");
    assert_eq!(
        (s.dropped(), s.in_flight, s.retry_queue),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(s.intervals >= 2, "{s:?}");
    let (got, _) = read_back(&brokers, s.delivered as usize);
    assert_eq!(got["GET /a"], (750, 150, 750));
    assert_eq!(got["GET /b"], (100, 20, 100));
}

#[test]
fn an_outage_delays_intervals_without_losing_or_double_counting_them() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let p = publisher(&brokers, Duration::from_millis(200));
    feed(&p, "GET /a", 100);
    wait_until(30, "delivery before the outage", || {
        p.stats().delivered >= 1
    });
    cluster.broker_down(-1).unwrap();
    feed(&p, "GET /a", 300);
    feed(&p, "GET /b", 50);
    // Messages time out (2 s), wait in the retry queue and are re-sent unchanged.
    wait_until(30, "failed deliveries re-sent", || {
        let s = p.stats();
        s.failed >= 1 && s.retried >= 1
    });
    cluster.broker_up(-1).unwrap();
    wait_until(60, "everything delivered after the outage", || {
        let s = p.stats();
        s.in_flight == 0 && s.retry_queue == 0 && s.delivered + s.dropped() == s.produced
    });
    p.shutdown(Duration::from_secs(8));
    let s = p.stats();
    eprintln!("publisher through an outage: {s:?}");
    assert!(s.balanced(), "{s:?}");
    assert_eq!(s.dropped(), 0, "{s:?}");
    let (got, copies) = read_back(&brokers, s.delivered as usize);
    eprintln!("read back: {got:?}, {copies} copies dropped");
    assert_eq!(got["GET /a"], (400, 80, 400));
    assert_eq!(got["GET /b"], (50, 10, 50));
}
