//! The Kafka sink against a real broker (tansu) and an independent consumer (confluent-kafka):
//! what the sink says it delivered is checked against what another client reads back.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "kafka/harness.rs"]
mod harness;
mod pii;
/// Planted personal data through the real binary to both topics (issue 12).
#[path = "kafka/pii.rs"]
mod pii_topics;

use common::free_port;
use harness::{Consumed, Tansu, consume, create_topic, wait_until};
use shadowdiff::event::{Event, SCHEMA};
use shadowdiff::pipeline::{Observation, Sink};
use shadowdiff::sink::kafka::{KafkaConfig, KafkaSink, KafkaStats, testing::sample_event};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn config(brokers: &str, topic: &str, spool: &Path) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.into(),
        topic: topic.into(),
        spool_dir: spool.to_path_buf(),
        delivery_timeout: Duration::from_secs(5),
        ..KafkaConfig::default()
    }
}

/// Feeds events through the `Sink` seam as the comparison workers do.
fn feed(sink: &dyn Sink, prefix: &str, range: std::ops::Range<u64>, endpoints: u64) -> Vec<String> {
    let verdict =
        shadowdiff::compare::Verdict::skipped(shadowdiff::compare::SkipReason::SampledOut);
    let mut ids = Vec::new();
    for n in range {
        let endpoint = format!("GET /orders/{}", n % endpoints);
        let id = format!("{prefix}-{n:06}");
        let ev = Arc::new(sample_event(&id, &endpoint, 1024));
        sink.observe(&Observation {
            ts: SystemTime::now(),
            endpoint: &endpoint,
            verdict: &verdict,
            primary_latency: None,
            candidate_latency: None,
            secondary_latency: None,
            send_skew: None,
            event: Some(&ev),
        });
        ids.push(id);
    }
    ids
}

/// Parses every consumed message as an event, checks schema and key, and returns
/// id → number of copies.
fn check_messages(msgs: &[Consumed]) -> BTreeMap<String, usize> {
    let mut copies = BTreeMap::new();
    for m in msgs {
        let value = m.value.as_deref().expect("message without value");
        let ev: Event = serde_json::from_str(value)
            .unwrap_or_else(|e| panic!("not a shadowdiff event ({e}): {value}"));
        assert_eq!(ev.schema, SCHEMA);
        assert_eq!(
            m.key.as_deref(),
            Some(ev.endpoint.as_str()),
            "message key must be the endpoint"
        );
        *copies.entry(ev.id).or_insert(0) += 1;
    }
    copies
}

/// In order per key: within each partition (first copies only), events come phase by phase and,
/// within a phase, in the order they were fed (ids are `{phase}-{n:06}`).
fn assert_in_order_per_partition(msgs: &[Consumed], phases: &[&str]) {
    let mut by_partition: BTreeMap<i32, Vec<&Consumed>> = BTreeMap::new();
    for m in msgs {
        by_partition.entry(m.partition).or_default().push(m);
    }
    for (p, mut ms) in by_partition {
        ms.sort_by_key(|m| m.offset);
        let mut seen = BTreeSet::new();
        let order: Vec<String> = ms
            .iter()
            .map(|m| {
                serde_json::from_str::<Event>(m.value.as_deref().unwrap())
                    .unwrap()
                    .id
            })
            .filter(|id| seen.insert(id.clone()))
            .collect();
        let rank = |id: &String| {
            let phase = phases.iter().position(|ph| id.starts_with(ph));
            (phase, id.clone())
        };
        let mut sorted = order.clone();
        sorted.sort_by_key(rank);
        assert_eq!(order, sorted, "partition {p} out of order");
    }
}

/// What the independent consumer reads: exactly `want` after de-duplication by id (each event
/// well-formed and keyed by endpoint), in order per partition, phase by phase.
fn assert_each_arrives_once(
    py: &Path,
    brokers: &str,
    topic: &str,
    want: impl IntoIterator<Item = String>,
    phases: &[&str],
) {
    let want: BTreeSet<String> = want.into_iter().collect();
    let msgs = consume(py, brokers, topic, want.len());
    let copies = check_messages(&msgs);
    assert_eq!(
        copies.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "after de-duplication by id, every event arrives once"
    );
    eprintln!(
        "consumer: {} messages, {} distinct ids, {} duplicates",
        msgs.len(),
        copies.len(),
        msgs.len() - copies.len()
    );
    assert_in_order_per_partition(&msgs, phases);
}

type Mock = rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// librdkafka's in-process mock cluster with the events topic (3 partitions), its bootstrap
/// address, and a folder for the sink's spool.
fn mock_cluster() -> (Mock, &'static str, String, tempfile::TempDir) {
    let cluster = Mock::new(1).unwrap();
    let topic = "shadowdiff.events";
    cluster.create_topic(topic, 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    (cluster, topic, brokers, tempfile::tempdir().unwrap())
}

fn assert_balanced(s: &KafkaStats) {
    assert!(s.balanced(), "accounting identity broken: {s:?}");
}

#[test]
fn every_event_arrives_well_formed_and_keyed_by_endpoint() {
    let (Some(tansu_bin), Some(py)) = (harness::tansu_bin(), harness::python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(&tansu_bin, free_port(), dir.path());
    let topic = "shadowdiff.events";
    create_topic(&broker.brokers(), topic, 3);
    let sink =
        KafkaSink::start(config(&broker.brokers(), topic, &dir.path().join("spool"))).unwrap();

    let sent: BTreeSet<String> = feed(&sink, "plain", 0..500, 7).into_iter().collect();
    wait_until(30, "500 deliveries", || sink.stats().delivered == 500);
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    assert_eq!(
        (s.detected, s.delivered, s.dropped(), s.spooled),
        (500, 500, 0, 0),
        "{s:?}"
    );
    assert_balanced(&s);

    let msgs = consume(&py, &broker.brokers(), topic, 500);
    let copies = check_messages(&msgs);
    let seen: BTreeSet<String> = copies.keys().cloned().collect();
    assert_eq!(seen, sent, "the consumer must see exactly the events sent");
    // With the broker up throughout, the idempotent producer delivers each event once.
    assert_eq!(msgs.len(), 500, "no duplicates expected without an outage");
    // Keyed by endpoint: all events of one endpoint share a partition.
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for m in &msgs {
        partitions
            .entry(m.key.clone().unwrap())
            .or_default()
            .insert(m.partition);
    }
    assert_eq!(partitions.len(), 7);
    assert!(partitions.values().all(|p| p.len() == 1), "{partitions:?}");
}

/// Regression (issue 6): the restarted tansu has forgotten the idempotent producer's id, the
/// first produce request after the restart fails fatally (UNKNOWN_PRODUCER_ID), and the sink,
/// which looked for the fatal error in the error callback where it never shows as such, kept
/// the dead producer: the spool never drained. The mock cluster keeps producer ids across an
/// outage, so only a real restarted broker shows this.
#[test]
fn broker_outage_loses_nothing_and_the_spool_drains_in_order() {
    let (Some(tansu_bin), Some(py)) = (harness::tansu_bin(), harness::python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Tansu::start(&tansu_bin, free_port(), dir.path());
    let topic = "shadowdiff.events";
    create_topic(&broker.brokers(), topic, 3);
    let sink =
        KafkaSink::start(config(&broker.brokers(), topic, &dir.path().join("spool"))).unwrap();

    // Before the outage.
    let before: BTreeSet<String> = feed(&sink, "before", 0..100, 5).into_iter().collect();
    wait_until(30, "100 deliveries", || sink.stats().delivered == 100);
    let copies = check_messages(&consume(&py, &broker.brokers(), topic, 100));
    assert_eq!(copies.keys().cloned().collect::<BTreeSet<_>>(), before);

    // During the outage every event ends in the spool, none in memory.
    broker.stop();
    let during = feed(&sink, "during", 0..300, 5);
    wait_until(30, "all outage events spooled", || {
        let s = sink.stats();
        s.queued == 0 && s.in_producer == 0 && s.spool_events == 300
    });
    let s = sink.stats();
    assert_eq!((s.delivered, s.dropped()), (100, 0), "{s:?}");
    assert_balanced(&s);

    // Back: memory storage forgot the topic, so it is created again; events published while
    // the spool drains queue behind it.
    broker.restart();
    create_topic(&broker.brokers(), topic, 3);
    let after = feed(&sink, "after", 0..100, 5);
    let back = std::time::Instant::now();
    wait_until(60, "the spool to drain", || {
        let s = sink.stats();
        s.pending() == 0
    });
    eprintln!(
        "spool drained {} ms after the broker and its topic were back",
        back.elapsed().as_millis()
    );
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    eprintln!("after the outage: {s:?}");
    assert_eq!(s.detected, 500);
    assert_eq!(s.dropped(), 0, "{s:?}");
    assert_eq!(
        s.delivered + s.dropped(),
        s.detected,
        "published + drops = detected"
    );
    assert_balanced(&s);

    // Every event of and after the outage (the restarted broker forgot what came before).
    let want = during.iter().chain(&after).cloned();
    assert_each_arrives_once(&py, &broker.brokers(), topic, want, &["during", "after"]);
}

#[test]
fn spool_survives_sigkill_and_is_sent_by_the_next_process() {
    let (Some(tansu_bin), Some(py)) = (harness::tansu_bin(), harness::python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let topic = "shadowdiff.events";
    // No broker at first; it starts (and the topic is created) after the kill.
    let mut broker = None;
    kill_then_recover(&brokers, topic, dir.path(), &py, || {
        broker = Some(Tansu::start(&tansu_bin, port, dir.path()));
        create_topic(&brokers, topic, 3);
    });
}

/// The kill -9 scenario against librdkafka's mock cluster, reached over TCP by the feeder
/// processes (runs without tansu).
#[test]
fn spool_survives_sigkill_with_the_mock_cluster() {
    let Some(py) = harness::python() else {
        return;
    };
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let topic = "shadowdiff.events";
    cluster.create_topic(topic, 3, 1).unwrap();
    cluster.broker_down(-1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    kill_then_recover(&cluster.bootstrap_servers(), topic, dir.path(), &py, || {
        cluster.broker_up(-1).unwrap();
    });
}

/// A feeder process spools 250 events while the broker is unreachable and is killed with
/// SIGKILL once they are all on disk; `broker_up` brings the broker; a second process drains the
/// spool; the independent consumer must read every event.
fn kill_then_recover(brokers: &str, topic: &str, dir: &Path, py: &Path, broker_up: impl FnOnce()) {
    let feeder = feeder_bin();
    let spool = dir.join("spool");
    let mut child = std::process::Command::new(&feeder)
        .args(["--brokers", brokers, "--topic", topic])
        .arg("--spool-dir")
        .arg(&spool)
        .args(["--count", "250", "--id-prefix", "killed"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut last = KafkaStats::default();
    while last.spool_events < 250 {
        let line = lines
            .next()
            .expect("feeder exited before spooling")
            .unwrap();
        last = serde_json::from_str(&line).unwrap();
    }
    assert_eq!((last.delivered, last.dropped()), (0, 0), "{last:?}");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the feeder must have been killed, not exited"
    );

    broker_up();
    let out = std::process::Command::new(&feeder)
        .args(["--brokers", brokers, "--topic", topic])
        .arg("--spool-dir")
        .arg(&spool)
        .args(["--count", "0", "--drain", "--timeout-s", "60"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "drain run failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: KafkaStats = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("second process: {last:?}");
    assert_eq!(
        (last.recovered, last.delivered, last.spool_events),
        (250, 250, 0),
        "{last:?}"
    );
    assert_balanced(&last);

    let msgs = consume(py, brokers, topic, 250);
    let copies = check_messages(&msgs);
    let want: BTreeSet<String> = (0..250).map(|n| format!("killed-{n}")).collect();
    assert_eq!(copies.keys().cloned().collect::<BTreeSet<_>>(), want);
    eprintln!(
        "consumer: {} messages, {} distinct ids",
        msgs.len(),
        copies.len()
    );
}

/// The `kafka_feeder` example, built next to this test binary (`cargo test` builds examples;
/// a lone `cargo test --test kafka` may not, so build it then).
fn feeder_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("examples/kafka_feeder");
    if !bin.is_file() {
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "kafka_feeder"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success(), "building the kafka_feeder example failed");
    }
    bin
}

/// The same outage against librdkafka's in-process mock cluster, which keeps its data while a
/// broker is down (tansu's memory storage does not): here every event, including those
/// delivered before the outage, must be read back — and the test runs without tansu.
#[test]
fn outage_against_the_librdkafka_mock_cluster_loses_nothing() {
    let (cluster, topic, brokers, dir) = mock_cluster();
    let sink = KafkaSink::start(config(&brokers, topic, &dir.path().join("spool"))).unwrap();

    let mut sent = feed(&sink, "before", 0..100, 5);
    wait_until(30, "100 deliveries", || sink.stats().delivered == 100);
    cluster.broker_down(-1).unwrap();
    sent.extend(feed(&sink, "during", 0..300, 5));
    wait_until(30, "all outage events spooled", || {
        let s = sink.stats();
        s.queued == 0 && s.in_producer == 0 && s.spool_events == 300
    });
    assert_balanced(&sink.stats());
    cluster.broker_up(-1).unwrap();
    sent.extend(feed(&sink, "after", 0..100, 5));
    wait_until(60, "the spool to drain", || sink.stats().pending() == 0);
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    eprintln!("mock cluster outage: {s:?}");
    assert_eq!(
        (s.detected, s.delivered, s.dropped()),
        (500, 500, 0),
        "{s:?}"
    );
    assert_balanced(&s);

    let Some(py) = harness::python() else {
        return;
    };
    assert_each_arrives_once(&py, &brokers, topic, sent, &["before", "during", "after"]);
}

/// With a tiny in-memory queue, a burst overflows it: `observe` drops and counts instead of
/// waiting, and published + counted drops still equals detected — checked against the consumer.
#[test]
fn a_full_queue_drops_with_a_count_and_the_books_still_balance() {
    let (_cluster, topic, brokers, dir) = mock_cluster(); // the binding keeps the cluster up
    let sink = KafkaSink::start(KafkaConfig {
        queue_capacity: 8,
        ..config(&brokers, topic, &dir.path().join("spool"))
    })
    .unwrap();
    feed(&sink, "burst", 0..5000, 5);
    wait_until(30, "nothing pending", || sink.stats().pending() == 0);
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    eprintln!("burst into a queue of 8: {s:?}");
    assert!(s.dropped_queue_full > 0, "the burst should overflow: {s:?}");
    assert_eq!(s.delivered + s.dropped(), s.detected, "{s:?}");
    assert_balanced(&s);
    let Some(py) = harness::python() else {
        return;
    };
    let copies = check_messages(&consume(&py, &brokers, topic, s.delivered as usize));
    assert_eq!(
        copies.len() as u64,
        s.delivered,
        "the consumer sees what was delivered"
    );
}

/// A fatal error of the idempotent producer is survived: the broker answers one produce request
/// with OUT_OF_ORDER_SEQUENCE_NUMBER, which librdkafka takes as a sequence desynchronisation and
/// makes fatal (the producer refuses everything afterwards). The sink must replace the producer,
/// send what the old one held through the spool, and deliver every event in order, with the
/// books balanced.
#[test]
fn a_fatal_producer_error_replaces_the_producer_and_loses_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (cluster, topic, brokers, dir) = mock_cluster();
    let sink = KafkaSink::start(config(&brokers, topic, &dir.path().join("spool"))).unwrap();

    let mut sent = feed(&sink, "before", 0..50, 5);
    wait_until(30, "50 deliveries", || sink.stats().delivered == 50);
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    sent.extend(feed(&sink, "fatal", 0..300, 5));
    wait_until(60, "every event delivered", || {
        sink.stats().delivered == 350
    });
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    eprintln!("fatal producer error: {s:?}");
    assert_eq!(s.producer_restarts, 1, "{s:?}");
    assert_eq!(
        (s.detected, s.delivered, s.dropped(), s.pending()),
        (350, 350, 0, 0),
        "{s:?}"
    );
    assert_balanced(&s);

    let Some(py) = harness::python() else {
        return;
    };
    assert_each_arrives_once(&py, &brokers, topic, sent, &["before", "fatal"]);
}

/// The stuck-producer watchdog: the broker stays connected but stops answering produce requests
/// in time (a 20 s round-trip delay on the mock broker), so nothing is acknowledged while events
/// wait. The sink must replace the producer after one stall period (the delivery timeout, 5 s
/// here; the delay is four times that, so no acknowledgement can come first even on a loaded
/// machine) and, once the broker answers again, deliver everything: each event counted once,
/// copies (an in-flight request the broker had already appended) recognisable by id. The new
/// producer's first requests may still meet the delay before it is lifted, hence the long
/// final wait.
#[test]
fn a_connected_producer_that_gets_no_acknowledgement_is_replaced() {
    let (cluster, topic, brokers, dir) = mock_cluster();
    let sink = KafkaSink::start(config(&brokers, topic, &dir.path().join("spool"))).unwrap();

    let mut sent = feed(&sink, "before", 0..50, 5);
    wait_until(30, "50 deliveries", || sink.stats().delivered == 50);
    cluster
        .broker_round_trip_time(1, Duration::from_secs(20))
        .unwrap();
    sent.extend(feed(&sink, "stuck", 0..100, 5));
    wait_until(15, "the producer to be replaced", || {
        sink.stats().producer_restarts >= 1
    });
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    sent.extend(feed(&sink, "after", 0..50, 5));
    wait_until(60, "every event delivered", || {
        let s = sink.stats();
        s.delivered == 200 && s.pending() == 0
    });
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    eprintln!("stalled producer: {s:?}");
    assert!(s.producer_restarts >= 1, "{s:?}");
    assert_eq!(
        (s.detected, s.delivered, s.dropped(), s.pending()),
        (200, 200, 0, 0),
        "{s:?}"
    );
    assert_balanced(&s);

    let Some(py) = harness::python() else {
        return;
    };
    assert_each_arrives_once(&py, &brokers, topic, sent, &["before", "stuck", "after"]);
}
