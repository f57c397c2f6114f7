//! The statistics publisher: a [`Sink`] that counts what the sidecar sees per endpoint and, every
//! `stats_interval`, publishes what it counted since the last flush to Kafka's `stats_topic`, one
//! `shadowdiff.stats.v1` message per endpoint ([`crate::stats::StatsMessage`]; docs/kafka.md).
//! The fleet aggregator (`shadowdiff aggregate`) adds these deltas up.
//!
//! ```text
//! comparison workers ──observe()──> 32 sharded per-endpoint deltas
//!                                         │ every interval: swapped out (one short lock per shard)
//!                                         ▼
//!                          publisher thread ──> librdkafka ──> stats_topic
//!                                 ▲                  │ failed deliveries
//!                                 └── bounded retry queue (same message, same seq)
//! ```
//!
//! Hot path: `observe` takes the lock of one of [`crate::stats::SHARDS`] shards of an
//! [`EndpointMap`], chosen by the endpoint's hash,
//! and bumps counters and three histograms, as [`crate::stats::Stats`] does; no global lock.
//!
//! A message is identified by `(instance, run, seq)`: a message that fails is re-sent unchanged,
//! so a consumer that sees it twice (the first attempt may have landed after all) drops the
//! copy. Counts are never folded into a later interval, which would make them uncountable twice.
//! Nothing is spooled to disk: a message still failing when the retry queue is full, or still
//! undelivered at shutdown, is dropped and counted.

use crate::pipeline::{Observation, Sink};
use crate::sink::kafka::KafkaConfig;
use crate::sink::kafka::producer::{self, Ctx, Report, permanent};
use crate::stats::{DEFAULT_MAX_ENDPOINTS, EndpointMap, IntervalDelta, MessageHead};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Configuration of the statistics publisher.
#[derive(Debug, Clone)]
pub struct StatsPublisherConfig {
    /// Brokers, `stats_topic`, `stats_interval` (how often deltas are published), compression,
    /// delivery timeout and raw `options` are taken from the Kafka sink's configuration
    /// (`sinks.kafka`).
    pub kafka: KafkaConfig,
    /// The sidecar's name in every message.
    pub instance: String,
    /// Endpoints per interval; later ones are counted as `OTHER`. Default
    /// [`DEFAULT_MAX_ENDPOINTS`]; the sidecar sets `grouping.max_endpoints`, as for the statistics.
    pub max_endpoints: usize,
    /// Distinct fields per endpoint and interval; the rest count as `(other)`. Default 256.
    pub max_fields: usize,
    /// Messages kept for another attempt after a failed delivery; beyond it the oldest are
    /// dropped and counted. Default 10 000.
    pub max_retry: usize,
}

impl StatsPublisherConfig {
    pub fn new(kafka: KafkaConfig, instance: impl Into<String>) -> Self {
        Self {
            kafka,
            instance: instance.into(),
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            max_fields: 256,
            max_retry: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatsPublisherError {
    #[error("kafka stats producer configuration: {0}")]
    Producer(#[from] KafkaError),
    #[error("cannot start the kafka stats thread: {0}")]
    Thread(#[from] std::io::Error),
}

#[derive(Debug, Default)]
struct Counters {
    intervals: AtomicU64,
    produced: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped_retry_full: AtomicU64,
    dropped_error: AtomicU64,
    dropped_shutdown: AtomicU64,
    in_flight: AtomicU64,
    retry_queue: AtomicU64,
}

/// A snapshot of the publisher's counters.
///
/// Every message built is, at a quiet moment, exactly one of: delivered, dropped, in flight or
/// waiting for a retry: `produced = delivered + dropped() + in_flight + retry_queue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsPublisherStats {
    /// Flushes that published at least one message.
    pub intervals: u64,
    /// Messages built (one per endpoint and interval).
    pub produced: u64,
    /// Messages Kafka acknowledged.
    pub delivered: u64,
    /// Delivery attempts that failed (the message then waits in the retry queue).
    pub failed: u64,
    /// Re-sent after a failure.
    pub retried: u64,
    /// Dropped because the retry queue was full (the oldest go first).
    pub dropped_retry_full: u64,
    /// Kafka refused the message itself (for example too large).
    pub dropped_error: u64,
    /// Still undelivered when shutdown's wait ran out.
    pub dropped_shutdown: u64,
    pub in_flight: u64,
    pub retry_queue: u64,
}

impl StatsPublisherStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_retry_full + self.dropped_error + self.dropped_shutdown
    }

    /// `shadowdiff_sink_events_total{sink="kafka_stats",outcome}` values.
    pub fn outcomes(&self) -> [(&'static str, u64); 3] {
        [
            ("delivered", self.delivered),
            ("failed", self.failed),
            ("dropped", self.dropped()),
        ]
    }

    pub fn balanced(&self) -> bool {
        self.produced == self.delivered + self.dropped() + self.in_flight + self.retry_queue
    }
}

/// A cheap, clonable reader of the publisher's counters (for `/metrics`).
#[derive(Debug, Clone)]
pub struct StatsPublisherHandle(Arc<Counters>);

impl StatsPublisherHandle {
    pub fn snapshot(&self) -> StatsPublisherStats {
        let c = &self.0;
        StatsPublisherStats {
            intervals: c.intervals.load(Relaxed),
            produced: c.produced.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            failed: c.failed.load(Relaxed),
            retried: c.retried.load(Relaxed),
            dropped_retry_full: c.dropped_retry_full.load(Relaxed),
            dropped_error: c.dropped_error.load(Relaxed),
            dropped_shutdown: c.dropped_shutdown.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            retry_queue: c.retry_queue.load(Relaxed),
        }
    }
}

impl crate::pipeline::metrics::MetricsSource for StatsPublisherHandle {
    fn collect(&self) -> Vec<crate::pipeline::metrics::MetricFamily> {
        vec![crate::pipeline::metrics::sink_events(
            "kafka_stats",
            self.snapshot().outcomes(),
        )]
    }
}

/// The per-endpoint deltas of the current interval: the statistics' own endpoint map, with the
/// same cap (`grouping.max_endpoints`) and the same single `OTHER`.
struct Deltas {
    map: EndpointMap<IntervalDelta>,
    max_fields: usize,
}

impl Deltas {
    fn record(&self, o: &Observation<'_>) {
        self.map.with_endpoint(o.endpoint, IntervalDelta::new, |d| {
            d.record(o, self.max_fields)
        });
    }

    /// Takes every delta recorded so far, one shard at a time (each lock held for a swap).
    fn take(&self) -> Vec<(Box<str>, IntervalDelta)> {
        self.map.take()
    }
}

/// The statistics publisher; see the module documentation.
pub struct StatsPublisher {
    deltas: Arc<Deltas>,
    counters: Arc<Counters>,
    stop: Mutex<Option<Sender<Duration>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for StatsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsPublisher")
            .field("stats", &self.stats())
            .finish()
    }
}

impl StatsPublisher {
    /// Builds the producer (bad settings are reported here, before traffic) and starts the
    /// publishing thread.
    pub fn start(cfg: StatsPublisherConfig) -> Result<StatsPublisher, StatsPublisherError> {
        let ctx = Ctx::new(PRODUCER_NAME);
        let producer = producer::create(&producer_config(&cfg.kafka), &ctx)?;
        let deltas = Arc::new(Deltas {
            map: EndpointMap::new(cfg.max_endpoints),
            max_fields: cfg.max_fields,
        });
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let run = format!("{:016x}", rand::random::<u64>());
        tracing::info!(
            sink = "kafka_stats",
            topic = %cfg.kafka.stats_topic,
            instance = %cfg.instance,
            run = %run,
            interval_ms = cfg.kafka.stats_interval.as_millis() as u64,
            "interval statistics go to Kafka"
        );
        let publisher = Publisher {
            interval: cfg.kafka.stats_interval.max(Duration::from_millis(10)),
            cfg,
            run,
            seq: 0,
            ctx,
            producer,
            deltas: Arc::clone(&deltas),
            counters: Arc::clone(&counters),
            retry: VecDeque::new(),
            retry_at: Instant::now(),
            stop: stop_rx,
        };
        let thread = std::thread::Builder::new()
            .name("shadowdiff-kstats".into())
            .spawn(move || publisher.run())?;
        Ok(StatsPublisher {
            deltas,
            counters,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn stats(&self) -> StatsPublisherStats {
        self.handle().snapshot()
    }

    pub fn handle(&self) -> StatsPublisherHandle {
        StatsPublisherHandle(Arc::clone(&self.counters))
    }
}

impl Sink for StatsPublisher {
    fn observe(&self, o: &Observation<'_>) {
        self.deltas.record(o);
    }

    /// Publishes the last (partial) interval and waits up to a quarter of `grace` for Kafka's
    /// acknowledgements (the events sink needs the rest of the grace period more).
    fn shutdown(&self, grace: Duration) {
        if let Some(tx) = self.stop.lock().take() {
            let _ = tx.send(grace / 4);
        }
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("kafka stats thread panicked");
        }
    }
}

impl Drop for StatsPublisher {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(4));
    }
}

/// This producer in log lines (`producer` field); the events sink's is `events`.
const PRODUCER_NAME: &str = "stats";

/// The producer: the Kafka sink's settings (brokers, idempotence, compression, options), under
/// its own client id so the two are told apart in broker logs.
fn producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = k.client_config();
    if !k.options.contains_key("client.id") {
        c.set("client.id", "shadowdiff-stats");
    }
    c
}

/// How long the thread sleeps between turns (delivery reports are served at least this often).
const TURN: Duration = Duration::from_millis(50);
const RETRY_BACKOFF: Duration = Duration::from_secs(1);

struct Publisher {
    cfg: StatsPublisherConfig,
    interval: Duration,
    run: String,
    seq: u64,
    ctx: Ctx,
    producer: BaseProducer<Ctx>,
    deltas: Arc<Deltas>,
    counters: Arc<Counters>,
    retry: VecDeque<(Vec<u8>, Vec<u8>)>,
    retry_at: Instant,
    stop: Receiver<Duration>,
}

impl Publisher {
    fn run(mut self) {
        let mut start = SystemTime::now();
        let mut next = next_boundary(start, self.interval);
        let wait = loop {
            match self.stop.recv_timeout(TURN) {
                Ok(wait) => break wait,
                Err(RecvTimeoutError::Disconnected) => break Duration::from_secs(1),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.producer.poll(Duration::ZERO);
            self.handle_reports(false);
            let now = SystemTime::now();
            if now >= next {
                self.flush(start, now);
                start = now;
                next = next_boundary(now, self.interval);
            }
            if !self.retry.is_empty() && Instant::now() >= self.retry_at {
                self.resend();
            }
        };
        // The last, partial interval; then what waits for a retry gets one more chance.
        self.flush(start, SystemTime::now());
        self.resend();
        let deadline = Instant::now() + wait;
        while self.counters.in_flight.load(Relaxed) > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
            self.handle_reports(false);
        }
        // Whatever is left is given up: purged from librdkafka (its reports then say so) and
        // counted, never silently lost.
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        let hard = Instant::now() + Duration::from_secs(1);
        while self.counters.in_flight.load(Relaxed) > 0 && Instant::now() < hard {
            self.producer.poll(Duration::from_millis(10));
            self.handle_reports(true);
        }
        let left = self.counters.in_flight.swap(0, Relaxed) + self.retry.len() as u64;
        self.retry.clear();
        self.counters.retry_queue.store(0, Relaxed);
        self.counters.dropped_shutdown.fetch_add(left, Relaxed);
        let s = StatsPublisherHandle(Arc::clone(&self.counters)).snapshot();
        if s.dropped_shutdown > 0 {
            tracing::warn!(
                dropped = s.dropped_shutdown,
                "kafka stats: messages still undelivered at shutdown were dropped"
            );
        }
        tracing::info!(
            produced = s.produced,
            delivered = s.delivered,
            dropped = s.dropped(),
            "kafka stats publisher stopped"
        );
    }

    /// Publishes one message per endpoint that saw traffic since `start`.
    fn flush(&mut self, start: SystemTime, end: SystemTime) {
        let deltas = self.deltas.take();
        if deltas.is_empty() {
            return;
        }
        self.counters.intervals.fetch_add(1, Relaxed);
        for (endpoint, d) in deltas {
            let head = MessageHead {
                instance: &self.cfg.instance,
                run: &self.run,
                seq: self.seq,
                start,
                end,
                endpoint: &endpoint,
            };
            self.seq += 1;
            self.counters.produced.fetch_add(1, Relaxed);
            match d.to_message(head) {
                Ok(m) => self.send(endpoint.as_bytes().to_vec(), m.to_json().into_bytes()),
                Err(e) => {
                    tracing::error!(error = %e, endpoint = %endpoint, "kafka stats: cannot encode; dropped");
                    self.counters.dropped_error.fetch_add(1, Relaxed);
                }
            }
        }
    }

    fn send(&mut self, key: Vec<u8>, payload: Vec<u8>) {
        // Opaque 0, without `PAYLOAD_KEPT`: a failure report carries the message back for the retry
        // queue.
        let rec = BaseRecord::with_opaque_to(&self.cfg.kafka.stats_topic, 0)
            .key(&key)
            .payload(&payload);
        match self.producer.send(rec) {
            Ok(()) => {
                self.counters.in_flight.fetch_add(1, Relaxed);
            }
            Err((e, _)) if permanent(&e) => {
                tracing::error!(error = %e, "kafka refused a stats message; dropped");
                self.counters.dropped_error.fetch_add(1, Relaxed);
            }
            // Local queue full or another local error: try again later.
            Err(_) => self.queue_retry(key, payload),
        }
    }

    fn queue_retry(&mut self, key: Vec<u8>, payload: Vec<u8>) {
        if self.retry.len() >= self.cfg.max_retry {
            self.retry.pop_front();
            self.counters.dropped_retry_full.fetch_add(1, Relaxed);
        }
        if self.cfg.max_retry > 0 {
            self.retry.push_back((key, payload));
        } else {
            self.counters.dropped_retry_full.fetch_add(1, Relaxed);
        }
        self.counters
            .retry_queue
            .store(self.retry.len() as u64, Relaxed);
        self.retry_at = Instant::now() + RETRY_BACKOFF;
    }

    fn resend(&mut self) {
        let batch: Vec<_> = self.retry.drain(..).collect();
        self.counters.retry_queue.store(0, Relaxed);
        self.counters.retried.fetch_add(batch.len() as u64, Relaxed);
        for (k, p) in batch {
            self.send(k, p);
        }
    }

    /// Takes delivery reports; `last`: at shutdown, failures are dropped rather than retried.
    fn handle_reports(&mut self, last: bool) {
        let reports = self.ctx.take_reports();
        for r in reports {
            self.counters.in_flight.fetch_sub(1, Relaxed);
            match r {
                Report::Delivered(_) => {
                    self.counters.delivered.fetch_add(1, Relaxed);
                }
                Report::Failed {
                    key,
                    payload,
                    error,
                    ..
                } => {
                    self.counters.failed.fetch_add(1, Relaxed);
                    if last {
                        self.counters.dropped_shutdown.fetch_add(1, Relaxed);
                    } else if permanent(&error) {
                        tracing::error!(error = %error, "kafka refused a stats message; dropped");
                        self.counters.dropped_error.fetch_add(1, Relaxed);
                    } else {
                        tracing::debug!(error = %error, "kafka stats delivery failed; will retry");
                        self.queue_retry(key, payload.unwrap_or_default());
                    }
                }
            }
        }
    }
}

/// The next multiple of `interval` after `t` (wall clock), so every sidecar flushes at the same
/// moments.
fn next_boundary(t: SystemTime, interval: Duration) -> SystemTime {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let step = interval.as_millis().max(1);
    let next = (ms / step + 1) * step;
    UNIX_EPOCH + Duration::from_millis(u64::try_from(next).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::compare::{SkipReason, Verdict};

    fn unreachable() -> KafkaConfig {
        KafkaConfig {
            brokers: crate::sink::kafka::testing::unreachable_brokers().unwrap(),
            delivery_timeout: Duration::from_millis(300),
            ..KafkaConfig::default()
        }
    }

    fn observe(p: &StatsPublisher, endpoint: &str, n: usize) {
        let v = Verdict::skipped(SkipReason::SampledOut);
        for _ in 0..n {
            p.observe(&Observation {
                ts: SystemTime::now(),
                endpoint,
                verdict: &v,
                primary_latency: Some(Duration::from_millis(3)),
                candidate_latency: None,
                secondary_latency: None,
                send_skew: None,
                event: None,
            });
        }
    }

    #[test]
    fn endpoints_beyond_the_cap_fold_into_other_and_take_empties_the_interval() {
        let mut cfg = StatsPublisherConfig::new(unreachable(), "t");
        cfg.max_endpoints = 2;
        cfg.kafka.stats_interval = Duration::from_secs(3600);
        let p = StatsPublisher::start(cfg).unwrap();
        for e in ["GET /a", "GET /b", "GET /c", "GET /d", "GET /a"] {
            observe(&p, e, 2);
        }
        let taken = p.deltas.take();
        let names: Vec<(&str, u64)> = taken.iter().map(|(e, d)| (&**e, d.exchanges())).collect();
        assert_eq!(names, [("GET /a", 4), ("GET /b", 2), ("OTHER", 4)]);
        assert!(p.deltas.take().is_empty());
        assert_eq!(p.deltas.map.len(), 0);
        p.shutdown(Duration::from_millis(400));
    }

    /// With no broker, the last interval is published at shutdown, fails, and is counted as
    /// dropped: the books balance and nothing is in flight afterwards.
    #[test]
    fn undeliverable_messages_are_counted_at_shutdown() {
        let mut cfg = StatsPublisherConfig::new(unreachable(), "t");
        cfg.kafka.stats_interval = Duration::from_secs(3600);
        let p = StatsPublisher::start(cfg).unwrap();
        observe(&p, "GET /a", 5);
        observe(&p, "GET /b", 1);
        p.shutdown(Duration::from_millis(400));
        let s = p.stats();
        assert_eq!((s.produced, s.delivered, s.in_flight), (2, 0, 0), "{s:?}");
        assert_eq!(s.dropped(), 2, "{s:?}");
        assert!(s.balanced(), "{s:?}");
    }

    #[test]
    fn boundaries_are_aligned_to_the_interval() {
        let t = UNIX_EPOCH + Duration::from_millis(12_345);
        assert_eq!(
            next_boundary(t, Duration::from_secs(10)),
            UNIX_EPOCH + Duration::from_secs(20)
        );
        assert_eq!(
            next_boundary(
                UNIX_EPOCH + Duration::from_secs(20),
                Duration::from_secs(10)
            ),
            UNIX_EPOCH + Duration::from_secs(30)
        );
    }
}
