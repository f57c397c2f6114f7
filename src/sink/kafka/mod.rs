//! The Kafka sink (DESIGN.md, "Event schema", "Metrics"; docs/kafka.md for operators).
//!
//! Published events (`Event::to_json_line()`) go to `topic`, keyed by endpoint, through an
//! idempotent `acks=all` librdkafka producer. Nothing on the request path waits for Kafka:
//!
//! ```text
//! comparison workers ──observe()──> bounded channel ──> pump thread ──> librdkafka ──> broker
//!     (try_send; full: drop, counted)                    │      ▲  (delivery reports)
//!                                                        ▼      │ drain, in order
//!                                                     redb spool (durable, size-bounded)
//! ```
//!
//! The pump thread owns the producer and the spool. An event goes to the spool instead of the
//! producer while the broker is known to be down, while the spool is not empty (so that the
//! spool drains in order and newer events queue behind older ones), when the producer's local
//! queue is full, and when a delivery fails. Spooled records are removed only after Kafka
//! acknowledged them. Every event accepted by `observe` ends as exactly one of: delivered,
//! dropped (counted, with a reason), or still pending (in memory or in the spool) — see
//! [`KafkaStats`].
//!
//! The pump also replaces the producer when it fails fatally or stays connected without any
//! acknowledgement for a stall period (a broker restarted with in-memory storage forgets the
//! idempotent producer's id, which leads to one or the other); what the old one held goes back
//! through the spool.
//! See `Pump::check_broker_state`, `Pump::check_stall` and docs/kafka.md, "Stuck and failed
//! producers".
//!
//! Files: [`config`] (the one configuration, `sinks.kafka`), `producer` (the librdkafka
//! producer stack, shared with the statistics publisher), `pump` (the background thread and its
//! spool handling); this one holds the [`Sink`] and its counters.

pub mod config;
pub(crate) mod producer;
mod pump;
#[cfg(test)]
mod tests;

pub use config::KafkaConfig;

use crate::event::Event;
use crate::pipeline::{Observation, Sink};
use crate::sink::spool::{Spool, SpoolError};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use pump::Pump;
use rdkafka::error::KafkaError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    #[error("kafka producer configuration: {0}")]
    Producer(#[from] KafkaError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot start the kafka sink thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Live counters, shared between `observe`, the pump thread and whoever reads them.
#[derive(Debug, Default)]
struct Counters {
    detected: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    spooled: AtomicU64,
    recovered: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_spool_full: AtomicU64,
    dropped_error: AtomicU64,
    dropped_closed: AtomicU64,
    producer_restarts: AtomicU64,
    spool_events: AtomicU64,
    spool_bytes: AtomicU64,
    in_producer: AtomicU64,
    queued: AtomicU64,
}

/// A snapshot of the sink's counters.
///
/// Accounting identity (holds at every quiescent moment, and is what the tests assert):
/// `detected + recovered = delivered + dropped() + pending()`,
/// where `pending() = queued + in_producer + spool_events`.
/// After a clean shutdown `queued = in_producer = 0`, so everything not delivered or dropped is
/// in the spool and is sent by the next process (which counts it as `recovered`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KafkaStats {
    /// Events handed to `observe` (published verdicts).
    pub detected: u64,
    /// Events Kafka acknowledged (`acks=all`), whether sent directly or from the spool.
    pub delivered: u64,
    /// Delivery attempts that failed (the event then went to, or stayed in, the spool).
    pub failed: u64,
    /// Events written to the spool.
    pub spooled: u64,
    /// Events found in the spool at start (left by an earlier process).
    pub recovered: u64,
    /// `observe` found the in-memory queue full.
    pub dropped_queue_full: u64,
    /// The spool was at `spool_max_bytes`.
    pub dropped_spool_full: u64,
    /// Unrecoverable: the spool failed to write, or Kafka refused the message itself (too large).
    pub dropped_error: u64,
    /// `observe` after `shutdown`.
    pub dropped_closed: u64,
    /// Times the librdkafka producer was replaced by a new one: after a fatal error, or when
    /// it was connected to a broker but got no acknowledgement for a whole stall period (for
    /// example a restarted broker that forgot the idempotent producer's id). What the old one
    /// held went back to the spool first; not an event count.
    pub producer_restarts: u64,
    /// Records in the spool now (`shadowdiff_spool_events`).
    pub spool_events: u64,
    /// Bytes in the spool now, as counted against `spool_max_bytes`.
    pub spool_bytes: u64,
    /// Events handed to librdkafka directly and not yet reported on.
    pub in_producer: u64,
    /// Events between `observe` and the pump thread.
    pub queued: u64,
}

impl KafkaStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_spool_full + self.dropped_error + self.dropped_closed
    }

    pub fn pending(&self) -> u64 {
        self.queued + self.in_producer + self.spool_events
    }

    /// `shadowdiff_sink_events_total{sink="kafka",outcome}` values.
    pub fn outcomes(&self) -> [(&'static str, u64); 4] {
        [
            ("delivered", self.delivered),
            ("failed", self.failed),
            ("spooled", self.spooled),
            ("dropped", self.dropped()),
        ]
    }

    /// Whether the accounting identity holds (see the type's documentation).
    pub fn balanced(&self) -> bool {
        self.detected + self.recovered == self.delivered + self.dropped() + self.pending()
    }
}

/// A cheap, clonable reader of the sink's counters (for `/metrics`).
#[derive(Debug, Clone)]
pub struct KafkaStatsHandle(Arc<Counters>);

impl KafkaStatsHandle {
    pub fn snapshot(&self) -> KafkaStats {
        let c = &self.0;
        KafkaStats {
            detected: c.detected.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            failed: c.failed.load(Relaxed),
            spooled: c.spooled.load(Relaxed),
            recovered: c.recovered.load(Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Relaxed),
            dropped_spool_full: c.dropped_spool_full.load(Relaxed),
            dropped_error: c.dropped_error.load(Relaxed),
            dropped_closed: c.dropped_closed.load(Relaxed),
            producer_restarts: c.producer_restarts.load(Relaxed),
            spool_events: c.spool_events.load(Relaxed),
            spool_bytes: c.spool_bytes.load(Relaxed),
            in_producer: c.in_producer.load(Relaxed),
            queued: c.queued.load(Relaxed),
        }
    }
}

impl crate::pipeline::metrics::MetricsSource for KafkaStatsHandle {
    fn collect(&self) -> Vec<crate::pipeline::metrics::MetricFamily> {
        use crate::pipeline::metrics::{MetricFamily, sink_events};
        let snap = self.snapshot();
        vec![
            sink_events("kafka", snap.outcomes()),
            MetricFamily::gauge(
                "shadowdiff_spool_events",
                "Events waiting in the Kafka spool",
                snap.spool_events as f64,
            ),
            MetricFamily::counter(
                "shadowdiff_kafka_producer_restarts_total",
                "Kafka producers replaced after a fatal error or a stall while connected",
            )
            .with(&[], snap.producer_restarts as f64),
        ]
    }
}

/// The Kafka sink. Cheap to call from any number of threads; see the module documentation.
pub struct KafkaSink {
    tx: Sender<Arc<Event>>,
    counters: Arc<Counters>,
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    grace_ms: Arc<AtomicU64>,
    done: Receiver<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("stats", &self.stats())
            .finish()
    }
}

impl KafkaSink {
    /// Opens the spool, builds the producer (configuration errors are reported here, before any
    /// traffic) and starts the pump thread. What an earlier process left in the spool is sent
    /// first.
    pub fn start(cfg: KafkaConfig) -> Result<KafkaSink, KafkaSinkError> {
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
        let counters = Arc::new(Counters::default());
        counters.recovered.store(spool.len(), Relaxed);
        counters.spool_events.store(spool.len(), Relaxed);
        counters.spool_bytes.store(spool.bytes(), Relaxed);
        if !spool.is_empty() {
            tracing::info!(
                events = spool.len(),
                bytes = spool.bytes(),
                path = %spool.path().display(),
                "kafka sink: sending events spooled by an earlier run"
            );
        }
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity.max(1));
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let grace_ms = Arc::new(AtomicU64::new(DEFAULT_GRACE.as_millis() as u64));
        let pump = Pump::new(
            cfg,
            rx,
            spool,
            Arc::clone(&counters),
            Arc::clone(&closed),
            Arc::clone(&stop),
            Arc::clone(&grace_ms),
        )?;
        let thread = std::thread::Builder::new()
            .name("shadowdiff-kafka".into())
            .spawn(move || {
                pump.run();
                let _ = done_tx.send(());
            })?;
        Ok(KafkaSink {
            tx,
            counters,
            closed,
            stop,
            grace_ms,
            done,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn stats(&self) -> KafkaStats {
        self.stats_handle().snapshot()
    }

    pub fn stats_handle(&self) -> KafkaStatsHandle {
        KafkaStatsHandle(Arc::clone(&self.counters))
    }

    /// Enqueues one event without blocking. Returns whether it was accepted (a refusal is
    /// counted as a drop).
    pub fn publish(&self, ev: &Arc<Event>) -> bool {
        let c = &self.counters;
        c.detected.fetch_add(1, Relaxed);
        if self.closed.load(Relaxed) {
            c.dropped_closed.fetch_add(1, Relaxed);
            return false;
        }
        // Count before sending so the pump's decrement can never run first and wrap.
        c.queued.fetch_add(1, Relaxed);
        match self.tx.try_send(Arc::clone(ev)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                c.queued.fetch_sub(1, Relaxed);
                c.dropped_queue_full.fetch_add(1, Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                c.queued.fetch_sub(1, Relaxed);
                c.dropped_closed.fetch_add(1, Relaxed);
                false
            }
        }
    }
}

impl Sink for KafkaSink {
    fn observe(&self, o: &Observation<'_>) {
        if let Some(ev) = o.event {
            self.publish(ev);
        }
    }

    /// Stops accepting, hands what is queued to Kafka, waits for acknowledgements for up to
    /// about 80% of `grace`, then moves whatever is still unacknowledged to the spool (sent by
    /// the next start). Returns within `grace` plus a little (spool commit, thread join).
    fn shutdown(&self, grace: Duration) {
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        self.grace_ms
            .store(grace.as_millis().min(u64::MAX as u128) as u64, Relaxed);
        self.closed.store(true, Relaxed);
        self.stop.store(true, Relaxed);
        match self.done.recv_timeout(grace + Duration::from_secs(5)) {
            Ok(()) => {
                let _ = thread.join();
            }
            Err(_) => tracing::error!(
                grace_ms = grace.as_millis() as u64,
                "kafka sink did not stop in time; leaving its thread behind"
            ),
        }
        let s = self.stats();
        tracing::info!(
            delivered = s.delivered,
            spooled_now = s.spool_events,
            dropped = s.dropped(),
            "kafka sink stopped"
        );
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        self.shutdown(DEFAULT_GRACE);
    }
}

const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Synthetic events for the Kafka tests, the feeder example and the benchmark (the proxy is
/// not needed to exercise the sink).
#[doc(hidden)]
pub mod testing {
    use crate::compare::{DiffKind, Difference, VerdictKind};
    use crate::event::{Event, EventRequest, EventResponse, SCHEMA};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    /// A bootstrap address nobody listens on: the broker is down from the start.
    pub fn unreachable_brokers() -> std::io::Result<String> {
        // Bound and dropped at once: nothing listens on that port afterwards.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        Ok(addr.to_string())
    }

    /// A mismatch event whose serialised form is about `body_bytes` + 700 bytes.
    pub fn sample_event(id: &str, endpoint: &str, body_bytes: usize) -> Event {
        let body =
            |price: f64| json!({"id": 42, "price": price, "note": "x".repeat(body_bytes / 2)});
        let resp = |price: f64, latency_us: u64| EventResponse {
            status: Some(200),
            latency_us: Some(latency_us),
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            body: body(price),
            error: None,
        };
        Event {
            schema: SCHEMA.into(),
            id: id.into(),
            ts: "2026-01-01T00:00:00.000Z".into(),
            source: "proxy".into(),
            instance: "test-instance".into(),
            endpoint: endpoint.into(),
            request: EventRequest {
                method: "GET".into(),
                path: "/orders/42".into(),
                query: None,
                headers: BTreeMap::new(),
                body: Value::Null,
            },
            primary: resp(9.99, 1830),
            candidate: Some(resp(10.99, 2410)),
            secondary: None,
            verdict: VerdictKind::Mismatch,
            skip_reason: None,
            differences: vec![Difference {
                path: "/price".into(),
                field: "/price".into(),
                kind: DiffKind::Value,
                primary: json!(9.99),
                candidate: json!(10.99),
                noise: false,
                detail: None,
            }],
            signature: Some("3f2a9c1e".into()),
            notes: Vec::new(),
            truncated: false,
            sends: None,
        }
    }
}
