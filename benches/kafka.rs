//! Kafka sink costs (docs/kafka.md, "Performance").
//!
//! - `kafka/observe`: what a comparison worker pays per published event (enqueue only; goal
//!   ≤ 2 µs), against two references measured in the same run: a bare bounded-channel send of
//!   the same `Arc<Event>`, and serialising the event (the work `observe` leaves to the pump).
//!   Needs no broker.
//! - throughput (goal ≥ 50k events/s of ~2 KB) to a local tansu broker when installed, and to
//!   librdkafka's in-process mock cluster, printed after the criterion groups. Each target also
//!   gets a baseline in the same run: one thread serialising the same events and sending them
//!   through a bare librdkafka producer with the sink's own settings, to a topic of its own —
//!   what serialising, librdkafka and the broker sustain without the sink.
//! - `kafka/spool` (goal ≥ 50k events/s both ways): the spool path. `THROUGHPUT_EVENTS` events
//!   published while no broker is reachable, timed until all are committed to the spool; then the
//!   broker comes up and the drain is timed until the spool is empty and everything is
//!   acknowledged. Printed next to the warm sink throughput to the same broker in the same run.
//!
//! `cargo bench --bench kafka` (everything), `cargo bench --bench kafka -- kafka/spool` (the
//! spool path and its warm baseline only).

// A benchmark is test code: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/kafka/harness.rs"]
mod harness;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use shadowdiff::event::Event;
use shadowdiff::pipeline::{Observation, Sink};
use shadowdiff::sink::kafka::{KafkaConfig, KafkaSink, testing::sample_event};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Events per timed chunk; between chunks the pump catches up (untimed), so the channel never
/// fills and every timed call takes the accepting path.
const CHUNK: u64 = 8192;

fn observe(c: &mut Criterion) {
    let ev = Arc::new(sample_event("bench-1", "GET /orders/{id}", 1300));
    let line_len = ev.to_json_line().len();
    let dir = tempfile::tempdir().expect("tempdir");
    // No broker on this port: the pump spools (bounded small, so it mostly refuses cheaply).
    let port = common::free_port();
    let sink = KafkaSink::start(KafkaConfig {
        brokers: format!("127.0.0.1:{port}"),
        spool_dir: dir.path().join("spool"),
        spool_max_bytes: 32 << 20,
        ..KafkaConfig::default()
    })
    .expect("sink");
    let verdict =
        shadowdiff::compare::Verdict::skipped(shadowdiff::compare::SkipReason::SampledOut);
    let mut g = c.benchmark_group("kafka");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("observe", format!("{line_len}B")), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let t = Instant::now();
                for _ in 0..n {
                    sink.observe(black_box(&Observation {
                        ts: SystemTime::UNIX_EPOCH,
                        endpoint: "GET /orders/{id}",
                        verdict: &verdict,
                        primary_latency: None,
                        candidate_latency: None,
                        secondary_latency: None,
                        send_skew: None,
                        event: Some(&ev),
                    }));
                }
                spent += t.elapsed();
                left -= n;
                while sink.stats().queued > 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            spent
        })
    });
    let (tx, rx) = crossbeam_channel::bounded::<Arc<Event>>(65_536);
    g.bench_function("channel_send_reference", |b| {
        b.iter(|| {
            let _ = tx.try_send(Arc::clone(black_box(&ev)));
            let _ = rx.try_recv();
        })
    });
    g.bench_function(
        BenchmarkId::new("serialise_reference", format!("{line_len}B")),
        |b| b.iter(|| black_box(&ev).to_json_line()),
    );
    g.finish();
    let s = sink.stats();
    assert_eq!(
        s.dropped_queue_full, 0,
        "the timed path must be the accepting one: {s:?}"
    );
    sink.shutdown(Duration::from_secs(1));
}

criterion_group!(benches, observe);

/// Publishes `N` events of ~2 KB and reports events/s from the first `observe` to the last
/// acknowledgement: to a local tansu when installed, and to librdkafka's in-process mock cluster
/// (a protocol-level stand-in, not a real broker: it shows the sink's own ceiling). `spool_only`
/// runs just the spool path and the warm sink throughput it is compared with.
fn throughput(spool_only: bool) {
    if let Some(bin) = harness::tansu_bin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = harness::Tansu::start(&bin, common::free_port(), dir.path());
        harness::create_topic(&broker.brokers(), "bench.events", 3);
        harness::create_topic(&broker.brokers(), "bench.raw", 3);
        if !spool_only {
            run_throughput("tansu (memory storage), cold", &broker.brokers(), false);
        }
        let sink = run_throughput("tansu (memory storage)", &broker.brokers(), true);
        if !spool_only {
            let raw = run_raw_producer("tansu (memory storage)", &broker.brokers());
            println!(
                "kafka/throughput ratio sink / bare producer, tansu: {:.2}",
                sink / raw
            );
        }
        drop(broker);
        // A broker of its own, started only once the events are spooled.
        let port = common::free_port();
        let mut later = None;
        run_spool_path(
            "tansu (memory storage)",
            &format!("127.0.0.1:{port}"),
            sink,
            || {
                let b = harness::Tansu::start(&bin, port, dir.path());
                harness::create_topic(&b.brokers(), "bench.events", 3);
                later = Some(b);
            },
        );
    }
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("bench.events", 3, 1).expect("topic");
    cluster.create_topic("bench.raw", 3, 1).expect("topic");
    let mock = cluster.bootstrap_servers();
    if !spool_only {
        run_throughput("librdkafka mock cluster, cold", &mock, false);
    }
    let sink = run_throughput("librdkafka mock cluster", &mock, true);
    if !spool_only {
        let raw = run_raw_producer("librdkafka mock cluster", &cluster.bootstrap_servers());
        println!(
            "kafka/throughput ratio sink / bare producer, mock cluster: {:.2}",
            sink / raw
        );
    }
    let down = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    down.create_topic("bench.events", 3, 1).expect("topic");
    down.broker_down(-1).expect("broker down");
    run_spool_path(
        "librdkafka mock cluster",
        &down.bootstrap_servers(),
        sink,
        || down.broker_up(-1).expect("broker up"),
    );
}

/// The spool path: `THROUGHPUT_EVENTS` events published to a sink whose broker is unreachable
/// (all end in the spool), timed from the first `observe` until all are committed to the spool;
/// then `broker_up` brings the broker (and its topic), and the drain is timed from the first
/// acknowledgement until the spool is empty and nothing is pending (the wait for librdkafka to
/// reconnect and for the drain's retry back-off is printed apart: it is not throughput).
/// `warm` is the warm sink throughput to the same kind of broker in the same run (events/s).
/// A sink with default settings on the bench topic, spooling into a fresh directory (kept alive
/// by the returned guard).
fn bench_sink(brokers: &str) -> (tempfile::TempDir, KafkaSink) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = KafkaSink::start(KafkaConfig {
        brokers: brokers.into(),
        topic: "bench.events".into(),
        spool_dir: dir.path().join("spool"),
        ..KafkaConfig::default()
    })
    .expect("sink");
    (dir, sink)
}

fn run_spool_path(target: &str, brokers: &str, warm: f64, broker_up: impl FnOnce()) {
    const N: u64 = THROUGHPUT_EVENTS;
    let (_dir, sink) = bench_sink(brokers);
    let events = throughput_events();
    let size = events[0].to_json_line().len();
    let stats = sink.stats_handle();
    let t = Instant::now();
    let mut paused = 0u64;
    for ev in &events {
        while stats.snapshot().queued > 60_000 {
            paused += 1;
            std::thread::sleep(Duration::from_micros(100));
        }
        sink.publish(ev);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = stats.snapshot();
        if s.queued == 0 && s.in_producer == 0 && s.spool_events + s.dropped() >= N {
            break;
        }
        assert!(Instant::now() < deadline, "not all spooled: {s:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
    let append_secs = t.elapsed().as_secs_f64();
    let s = stats.snapshot();
    let append_rate = s.spool_events as f64 / append_secs;
    println!(
        "kafka/spool append, {target} down: {} of {N} events of {size} B committed to the spool \
         in {append_secs:.2} s = {append_rate:.0} events/s ({:.1} MB/s); dropped {}, \
         producer pauses {paused}",
        s.spool_events,
        append_rate * size as f64 / 1e6,
        s.dropped(),
    );
    let spooled = s.spool_events;

    let up = Instant::now();
    broker_up();
    let ready = up.elapsed().as_secs_f64();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(180);
    let mut first = None;
    loop {
        let s = stats.snapshot();
        if first.is_none() && s.delivered > 0 {
            first = Some(Instant::now());
        }
        if s.pending() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "spool not drained: {s:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
    let end = Instant::now();
    let first = first.unwrap_or(end);
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    let drain_secs = (end - first).as_secs_f64();
    let drain_rate = s.delivered as f64 / drain_secs;
    println!(
        "kafka/spool drain, {target} back: {} of {spooled} spooled events acknowledged in \
         {drain_secs:.2} s from the first acknowledgement = {drain_rate:.0} events/s \
         ({:.1} MB/s); broker start {ready:.2} s, then {:.2} s to the first acknowledgement; \
         failed {}, restarts {}, dropped {}",
        s.delivered,
        drain_rate * size as f64 / 1e6,
        (first - back).as_secs_f64(),
        s.failed,
        s.producer_restarts,
        s.dropped(),
    );
    println!(
        "kafka/spool ratios to the warm sink ({warm:.0} events/s), {target}: append {:.2}, \
         drain {:.2}",
        append_rate / warm,
        drain_rate / warm
    );
}

const THROUGHPUT_EVENTS: u64 = 100_000;

fn throughput_events() -> Vec<Arc<Event>> {
    (0..THROUGHPUT_EVENTS)
        .map(|n| {
            Arc::new(sample_event(
                &format!("tp-{n}"),
                &format!("GET /orders/{}", n % 16),
                1300,
            ))
        })
        .collect()
}

/// Counts acknowledgements for the bare-producer baseline.
#[derive(Clone, Default)]
struct Acks(
    Arc<std::sync::atomic::AtomicU64>,
    Arc<std::sync::atomic::AtomicU64>,
);

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        let n = if r.is_ok() { &self.0 } else { &self.1 };
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The baseline: the same `THROUGHPUT_EVENTS` events serialised and sent on one thread through a
/// bare `BaseProducer` with the sink's librdkafka settings, waiting for room when its queue is
/// full (no channel, no spool, no accounting), from the first event to the last
/// acknowledgement, warm. Returns events/s.
fn run_raw_producer(target: &str, brokers: &str) -> f64 {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let events = throughput_events();
    let first = events[0].to_json_line();
    let size = first.len();
    let acks = Acks::default();
    let producer: BaseProducer<Acks> = KafkaConfig {
        brokers: brokers.into(),
        ..KafkaConfig::default()
    }
    .client_config()
    .create_with_context(acks.clone())
    .expect("producer");
    // Warm, like the sink's measured run: connected and holding a producer id.
    producer
        .send(
            BaseRecord::to("bench.raw")
                .key("GET /orders/0")
                .payload(&first),
        )
        .map_err(|(e, _)| e)
        .expect("warm-up send");
    producer.flush(Duration::from_secs(30)).expect("warm-up");
    acks.0.store(0, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let mut waits = 0u64;
    for (i, ev) in events.iter().enumerate() {
        // Serialising is part of the work: the sink does it on its thread too.
        let payload = ev.to_json_line();
        loop {
            let rec = BaseRecord::to("bench.raw")
                .key(&ev.endpoint)
                .payload(&payload);
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert_eq!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        "{e}"
                    );
                    waits += 1;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        if i % 1024 == 0 {
            // `poll(0)` serves one event, the reports of one produce response: serve all that
            // are ready, as the sink does (serving one per call held this baseline back).
            loop {
                let seen = acks.0.load(std::sync::atomic::Ordering::Relaxed)
                    + acks.1.load(std::sync::atomic::Ordering::Relaxed);
                producer.poll(Duration::ZERO);
                if acks.0.load(std::sync::atomic::Ordering::Relaxed)
                    + acks.1.load(std::sync::atomic::Ordering::Relaxed)
                    == seen
                {
                    break;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let secs = t.elapsed().as_secs_f64();
    let ok = acks.0.load(std::sync::atomic::Ordering::Relaxed);
    let failed = acks.1.load(std::sync::atomic::Ordering::Relaxed);
    let rate = ok as f64 / secs;
    println!(
        "kafka/throughput baseline, bare producer to {target}: {ok} of {THROUGHPUT_EVENTS} events \
         of {size} B acknowledged in {secs:.2} s = {rate:.0} events/s ({:.1} MB/s); failed \
         {failed}, queue-full waits {waits}",
        rate * size as f64 / 1e6,
    );
    rate
}

/// Returns events/s. `warm`: one event is published and acknowledged before the clock starts,
/// so the producer is connected and has its producer id; cold, the burst starts with the sink
/// and can fill librdkafka's queue (64 MiB, ~33 000 events) before the producer id arrives,
/// which spills the rest of the burst to the spool.
fn run_throughput(target: &str, brokers: &str, warm: bool) -> f64 {
    const N: u64 = THROUGHPUT_EVENTS;
    let (_dir, sink) = bench_sink(brokers);
    let events = throughput_events();
    let size = events[0].to_json_line().len();
    if warm {
        sink.publish(&Arc::new(sample_event("warm-up", "GET /orders/0", 1300)));
        let deadline = Instant::now() + Duration::from_secs(30);
        while sink.stats().delivered == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let before = sink.stats().delivered;
    let t = Instant::now();
    let mut paused = 0u64;
    let stats = sink.stats_handle();
    for ev in &events {
        // Pace on the channel rather than drop: this measures the pipeline, not the drop path.
        while stats.snapshot().queued > 60_000 {
            paused += 1;
            std::thread::sleep(Duration::from_micros(100));
        }
        sink.publish(ev);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.stats().pending() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t.elapsed().as_secs_f64();
    sink.shutdown(Duration::from_secs(5));
    let s = sink.stats();
    let delivered = s.delivered - before;
    println!(
        "kafka/throughput to {target}: {delivered} of {N} events of {size} B acknowledged in \
         {secs:.2} s = {:.0} events/s ({:.1} MB/s); spooled {}, dropped {}, producer pauses \
         {paused}",
        delivered as f64 / secs,
        delivered as f64 * size as f64 / secs / 1e6,
        s.spooled,
        s.dropped(),
    );
    delivered as f64 / secs
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench -- <filter>` passes a filter; run the broker part only without one or when
    // it asks for it. Options that take a value are skipped so their value is not a filter.
    const WITH_VALUE: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--profile-time",
        "--output-format",
        "--color",
        "--noise-threshold",
        "--significance-level",
        "--confidence-level",
        "--nresamples",
        "--plotting-backend",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filter = None;
    let mut i = 0;
    while i < args.len() {
        if WITH_VALUE.contains(&args[i].as_str()) {
            i += 1;
        } else if !args[i].starts_with('-') {
            filter = Some(args[i].clone());
            break;
        }
        i += 1;
    }
    match filter.as_deref() {
        None => throughput(false),
        Some(f) if "kafka/throughput".contains(f) => throughput(false),
        Some(f) if "kafka/spool".contains(f) => throughput(true),
        Some(_) => {}
    }
}
