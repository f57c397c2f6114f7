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

use crate::event::Event;
use crate::pipeline::{Observation, Sink};
use crate::sink::spool::{Spool, SpoolError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Configuration of the Kafka sink. `sinks.kafka` in the YAML config maps onto this one to one;
/// every field has a default ([`KafkaConfig::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port` (`bootstrap.servers`).
    /// Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Topic the events (`shadowdiff.exchange.v1`) are published to, keyed by endpoint.
    /// Default `shadowdiff.events`.
    pub topic: String,
    /// Topic of the interval statistics, written by [`crate::sink::kafka_stats`] (not by this
    /// sink) and read by `shadowdiff aggregate`. Default `shadowdiff.stats`.
    pub stats_topic: String,
    /// Directory of the disk spool (`events.redb` inside). Default `/var/lib/shadowdiff/spool`.
    pub spool_dir: PathBuf,
    /// Bound of the spool: keys + payloads + 8 bytes per record. Beyond it new events are
    /// dropped and counted (`dropped_spool_full`). Default 1 GiB.
    pub spool_max_bytes: u64,
    /// Events waiting between `observe` and the pump thread. Beyond it `observe` drops and
    /// counts (`dropped_queue_full`) rather than block a comparison worker. Default 65 536.
    pub queue_capacity: usize,
    /// `compression.type`: `lz4` (default), `zstd`, `gzip`, `snappy` or `none`.
    /// (`zstd` needs librdkafka built with zstd; the bundled build here has lz4 and gzip.)
    pub compression: String,
    /// How long librdkafka keeps trying one message before failing it to the spool
    /// (`message.timeout.ms`). Default 30 s.
    pub delivery_timeout: Duration,
    /// Producer local queue bound in messages (`queue.buffering.max.messages`). Default 100 000.
    pub max_buffered_messages: u32,
    /// Producer local queue bound in KiB (`queue.buffering.max.kbytes`). Default 65 536 (64 MiB).
    pub max_buffered_kbytes: u32,
    /// Raw librdkafka settings, applied last: they override everything above
    /// (for example `security.protocol`, `sasl.*`, `linger.ms`). Default empty.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "shadowdiff.events".into(),
            stats_topic: "shadowdiff.stats".into(),
            spool_dir: PathBuf::from("/var/lib/shadowdiff/spool"),
            spool_max_bytes: 1 << 30,
            queue_capacity: 65_536,
            compression: "lz4".into(),
            delivery_timeout: Duration::from_secs(30),
            max_buffered_messages: 100_000,
            max_buffered_kbytes: 64 << 10,
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The librdkafka producer configuration: our settings, then `options` on top.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "shadowdiff")
            // Idempotence: librdkafka's own retries never duplicate or reorder within a
            // partition, so duplicates can only come from our spool (recognisable by `id`).
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            .set(
                "queue.buffering.max.messages",
                self.max_buffered_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                self.max_buffered_kbytes.to_string(),
            )
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().max(1).to_string(),
            )
            // Reconnect within a second of the broker coming back (librdkafka's default backs
            // off to 10 s), so the spool starts draining promptly.
            .set("reconnect.backoff.max.ms", "1000")
            // Statistics tell the pump whether a broker connection is up, which the
            // stuck-producer watchdog needs (see `Pump::check_stall`). 0 disables both.
            .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string());
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

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
        let ctx = Ctx::default();
        let producer = new_producer(&cfg, &ctx)?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity.max(1));
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let grace_ms = Arc::new(AtomicU64::new(DEFAULT_GRACE.as_millis() as u64));
        let pump = Pump {
            cfg,
            rx,
            ctx,
            producer,
            spool,
            counters: Arc::clone(&counters),
            closed: Arc::clone(&closed),
            stop: Arc::clone(&stop),
            grace_ms: Arc::clone(&grace_ms),
            offline: false,
            next_seq: 0,
            to_spool: Vec::new(),
            deletes: Vec::new(),
            drain_in_flight: 0,
            drain_next: None,
            drain_sizes: BTreeMap::new(),
            drain_bytes: 0,
            drain_failed: false,
            retry_at: Instant::now(),
            backoff: MIN_BACKOFF,
            last_progress: Instant::now(),
            up_since: None,
            stall: Duration::ZERO,
            last_restart: None,
        };
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
/// Events taken from the channel per loop turn.
const RECV_BATCH: usize = 4096;
/// How long the pump sleeps when there is nothing to do (delivery reports are served at least
/// this often).
const IDLE_WAIT: Duration = Duration::from_millis(5);
/// The drain's window: at most this many spooled records / bytes in flight at once, topped up
/// every turn as acknowledgements come in.
const DRAIN_RECORDS: usize = 10_000;
const DRAIN_BYTES: usize = 16 << 20;
/// At most this many librdkafka events (each the delivery reports of one produce response)
/// served per loop turn; the turn stops earlier at the first poll that yields no report.
const MAX_EVENTS_PER_TURN: usize = 1024;
/// How long the pump waits for room in librdkafka's queue before spooling an event.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// librdkafka statistics period (`statistics.interval.ms`): how fast the pump learns that a
/// broker connection is up.
const STATS_INTERVAL_MS: u64 = 1000;
/// The stuck-producer watchdog's longest stall period: it doubles after each restart that
/// brought no acknowledgement (a broker that refuses every producer, a missing topic), so such
/// a case costs a restart every few minutes, not a restart loop.
const MAX_STALL: Duration = Duration::from_secs(300);
/// The shortest time between two producer replacements after fatal errors.
const MIN_RESTART_GAP: Duration = Duration::from_secs(1);
/// How long replacing a producer waits for the old one's purge reports.
const PURGE_WAIT: Duration = Duration::from_secs(2);

/// Delivery opaque: the event's sequence number, with [`FROM_SPOOL`] set when it was sent from
/// the spool (then the spool still holds it) rather than directly (then only librdkafka does).
type Opaque = usize;
const FROM_SPOOL: usize = 1 << 63;

enum Report {
    Delivered(Opaque),
    Failed {
        opaque: Opaque,
        key: Vec<u8>,
        payload: Option<Vec<u8>>,
        error: KafkaError,
    },
}

/// What librdkafka's callbacks record, read by the pump thread.
#[derive(Default)]
struct CtxState {
    reports: Mutex<Vec<Report>>,
    brokers_down: AtomicBool,
    /// From the latest statistics: some broker connection is up (librdkafka state `UP`).
    broker_up: AtomicBool,
    /// From the latest statistics, for the watchdog's log line: the idempotent producer's
    /// state, id and epoch.
    idempotence: Mutex<(String, i64, i64)>,
}

/// The producer context. librdkafka calls into it from `poll()` on the pump thread; it only
/// records. Each producer gets its own, so that a replaced producer's late callbacks (its
/// purge reports, a last error) cannot be mistaken for the new one's; the pump collects the
/// old one's reports after dropping it.
#[derive(Clone, Default)]
struct Ctx(Arc<CtxState>);

impl Ctx {
    fn reports_len(&self) -> usize {
        self.0.reports.lock().len()
    }

    fn take_reports(&self) -> Vec<Report> {
        std::mem::take(&mut *self.0.reports.lock())
    }
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.0.brokers_down.store(true, Relaxed);
                tracing::debug!(error = %error, reason, "kafka: all brokers down");
            }
            // A fatal error does not arrive here as `_FATAL`: the event API hands it over under
            // its underlying code (e.g. UNKNOWN_PRODUCER_ID) with a separate "fatal" flag that
            // rdkafka does not pass on. The pump asks `fatal_error()` instead.
            // librdkafka logs these itself (connection failures repeat while a broker is away).
            _ => tracing::debug!(error = %error, reason, "kafka client error"),
        }
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        // Bootstrap and learned brokers are real connections; the internal and logical ones
        // are not.
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && matches!(b.source.as_str(), "learned" | "configured"));
        self.0.broker_up.store(up, Relaxed);
        if let Some(eos) = stats.eos {
            *self.0.idempotence.lock() = (eos.idemp_state, eos.producer_id, eos.producer_epoch);
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Opaque;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Opaque) {
        let r = match result {
            Ok(_) => Report::Delivered(opaque),
            Err((error, msg)) => Report::Failed {
                opaque,
                key: msg.key().map(<[u8]>::to_vec).unwrap_or_default(),
                // Spooled events are still on disk; only direct ones need their bytes back.
                payload: (opaque & FROM_SPOOL == 0)
                    .then(|| msg.payload().map(<[u8]>::to_vec))
                    .flatten(),
                error: error.clone(),
            },
        };
        self.0.reports.lock().push(r);
    }
}

fn new_producer(cfg: &KafkaConfig, ctx: &Ctx) -> Result<BaseProducer<Ctx>, KafkaError> {
    cfg.client_config().create_with_context(ctx.clone())
}

/// Kafka refused the message itself: retrying or spooling cannot help.
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidArgument)
    )
}

struct Pump {
    cfg: KafkaConfig,
    rx: Receiver<Arc<Event>>,
    ctx: Ctx,
    producer: BaseProducer<Ctx>,
    spool: Spool,
    counters: Arc<Counters>,
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    grace_ms: Arc<AtomicU64>,
    /// The broker is known unreachable: new events go to the spool, which survives a crash,
    /// instead of librdkafka's memory. Cleared by the next acknowledgement.
    offline: bool,
    /// Every accepted event is numbered in arrival order. An event that fails after later ones
    /// were spooled is spooled under its own, lower number, so the spool still drains in
    /// arrival order.
    next_seq: u64,
    /// Records to append to the spool at the end of this turn (one transaction).
    to_spool: Vec<(u64, Vec<u8>, Vec<u8>)>,
    /// Spool records acknowledged by Kafka, to remove at the end of this turn.
    deletes: Vec<u64>,
    /// Spooled records handed to librdkafka and not yet reported on.
    drain_in_flight: u64,
    /// The drain's read position while a pass is on (see [`Pump::drain_step`]): the sequence
    /// number after the last record handed to librdkafka. `None` between passes.
    drain_next: Option<u64>,
    /// Bytes (key + payload) of each spooled record in flight, and their sum: the drain keeps
    /// at most [`DRAIN_RECORDS`] / [`DRAIN_BYTES`] in flight.
    drain_sizes: BTreeMap<u64, usize>,
    drain_bytes: usize,
    drain_failed: bool,
    retry_at: Instant,
    backoff: Duration,
    /// Stuck-producer watchdog (see [`Pump::check_stall`]): the latest acknowledgement, or the
    /// latest moment the sink had nothing to deliver.
    last_progress: Instant,
    /// Since when a broker connection has been up without interruption (from statistics).
    up_since: Option<Instant>,
    /// The current stall period: [`Pump::base_stall`], doubled after each restart that brought
    /// no acknowledgement.
    stall: Duration,
    /// When the producer was last replaced.
    last_restart: Option<Instant>,
}

impl Pump {
    fn run(mut self) {
        self.next_seq = self.spool.next_seq();
        self.stall = self.base_stall();
        loop {
            let stopping = self.stop.load(Relaxed);
            self.check_broker_state();
            self.check_stall();
            self.serve_events();
            self.handle_reports();
            let disconnected = self.receive(if stopping { None } else { Some(IDLE_WAIT) });
            self.persist();
            if stopping || disconnected {
                break;
            }
            self.drain_step();
        }
        self.finish();
    }

    /// Takes a batch from the channel; waits up to `wait` for the first event.
    fn receive(&mut self, wait: Option<Duration>) -> bool {
        let mut n = 0;
        if let Some(wait) = wait {
            match self.rx.recv_timeout(wait) {
                Ok(ev) => {
                    self.accept(&ev);
                    n += 1;
                }
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => return true,
            }
        }
        // When stopping, take everything: `closed` is set, so the channel only shrinks.
        let limit = if wait.is_some() {
            RECV_BATCH
        } else {
            usize::MAX
        };
        while n < limit {
            match self.rx.try_recv() {
                Ok(ev) => {
                    self.accept(&ev);
                    n += 1;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return true,
            }
        }
        false
    }

    fn accept(&mut self, ev: &Event) {
        self.counters.queued.fetch_sub(1, Relaxed);
        let key = ev.endpoint.as_bytes().to_vec();
        let payload = ev.to_json_line().into_bytes();
        let seq = self.next_seq;
        self.next_seq += 1;
        // Keep order: while anything is spooled, newer events queue behind it.
        if self.offline || !self.spool.is_empty() || !self.to_spool.is_empty() {
            self.to_spool.push((seq, key, payload));
            return;
        }
        // A full local queue usually means a burst, not an outage: serve delivery reports for
        // a moment (the bounded channel absorbs meanwhile) before spilling to disk, because
        // once anything is spooled every later event takes the slower spool path.
        let deadline = Instant::now() + QUEUE_FULL_WAIT;
        loop {
            let rec = BaseRecord::with_opaque_to(&self.cfg.topic, seq as usize)
                .key(&key)
                .payload(&payload);
            let err = self.producer.send(rec).err().map(|(e, _)| e);
            match err {
                None => {
                    self.counters.in_producer.fetch_add(1, Relaxed);
                    return;
                }
                Some(e) if permanent(&e) => {
                    tracing::error!(error = %e, endpoint = %ev.endpoint, id = %ev.id, "kafka refused event; dropped");
                    self.counters.dropped_error.fetch_add(1, Relaxed);
                    return;
                }
                Some(e)
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && Instant::now() < deadline =>
                {
                    self.producer.poll(Duration::from_millis(1));
                    self.handle_reports();
                    // A failure report may have spooled an earlier event: stay behind it.
                    if self.offline || !self.to_spool.is_empty() {
                        self.to_spool.push((seq, key, payload));
                        return;
                    }
                }
                // Still full (broker slow or down), or another local error: the spool takes it.
                Some(_) => {
                    self.to_spool.push((seq, key, payload));
                    return;
                }
            }
        }
    }

    fn check_broker_state(&mut self) {
        // A fatal error makes this producer refuse every message from then on (`_FATAL`), so the
        // spool could never drain through it. Asking the client is the only reliable way to see
        // one: the error callback gets it under its underlying code, indistinguishable from the
        // same error reported as non-fatal (see `Ctx::error`). It is one atomic read.
        // Seen against a broker restarted with in-memory storage (tansu `memory://`): it has
        // forgotten the producer id, answers UNKNOWN_PRODUCER_ID, and librdkafka makes that fatal
        // when the failed request is not the oldest unacknowledged one of its partition
        // ("unable to retry without risking duplication/reordering").
        // At most one replacement per `MIN_RESTART_GAP`, so that a producer failing fatally as
        // soon as it starts cannot turn this loop into a stream of new clients; meanwhile the
        // failed one refuses every message, which goes to the spool.
        let may_restart = self
            .last_restart
            .is_none_or(|t| t.elapsed() >= MIN_RESTART_GAP);
        if may_restart && let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::error!(error = %code, reason = %reason, "kafka producer failed fatally");
            self.restart_producer("fatal error");
        }
        if self.ctx.0.brokers_down.swap(false, Relaxed) && !self.offline {
            self.offline = true;
            tracing::warn!(
                brokers = %self.cfg.brokers,
                "kafka brokers unreachable; spooling events to disk"
            );
            // Messages still waiting in librdkafka's memory would be lost by a crash; move them
            // to the spool now. In-flight ones stay: they may yet be acknowledged.
            self.producer.purge(PurgeConfig::default().queue());
        }
    }

    /// How long a connected producer may go without any acknowledgement while it has something
    /// to deliver: one delivery timeout (by then librdkafka has failed what it held anyway),
    /// but at least one statistics period and at most [`MAX_STALL`].
    fn base_stall(&self) -> Duration {
        self.cfg
            .delivery_timeout
            .clamp(Duration::from_millis(STATS_INTERVAL_MS), MAX_STALL)
    }

    /// The stuck-producer watchdog. A broker that is down is reported (and handled by the
    /// spool), and so is a fatal error, but not a producer that is connected and never
    /// succeeds. librdkafka's own code shows one way there: a broker that lost the idempotent
    /// producer's id answers UNKNOWN_PRODUCER_ID; when the failed request is the oldest
    /// unacknowledged one and was not retried yet, librdkafka does not fail fatally but bumps
    /// the epoch locally and retries — and a broker that does not know the id at all answers the
    /// same again, for ever. Only a new producer, which asks for a new id, gets out of that; a
    /// stale topic or leader that never resolves ends the same way. So: when a broker connection
    /// has been up for a whole stall period, events were waiting all that time and none was
    /// acknowledged, replace the producer.
    fn check_stall(&mut self) {
        let now = Instant::now();
        if !self.outstanding() && self.spool.is_empty() && self.to_spool.is_empty() {
            self.last_progress = now;
        }
        match (self.ctx.0.broker_up.load(Relaxed), self.up_since) {
            (true, None) => self.up_since = Some(now),
            (false, Some(_)) => self.up_since = None,
            _ => {}
        }
        let Some(up_since) = self.up_since else {
            return;
        };
        let stalled_for = now.duration_since(self.last_progress.max(up_since));
        if stalled_for < self.stall {
            return;
        }
        let (idemp_state, producer_id, producer_epoch) = self.ctx.0.idempotence.lock().clone();
        tracing::warn!(
            stalled_ms = stalled_for.as_millis() as u64,
            in_producer = self.counters.in_producer.load(Relaxed),
            drain_in_flight = self.drain_in_flight,
            spool_events = self.spool.len(),
            idemp_state = %idemp_state,
            producer_id,
            producer_epoch,
            "kafka producer connected but nothing acknowledged; replacing it"
        );
        self.restart_producer("connected but no acknowledgement");
        // The new producer gets a full period; if it fares no better, the next one gets two.
        self.last_progress = Instant::now();
        self.stall = (self.stall * 2).min(MAX_STALL.max(self.base_stall()));
    }

    /// Replaces the producer. Everything the old one holds is purged first and comes back as
    /// failed delivery reports: direct events go to the spool under their own sequence numbers
    /// and spooled ones stay there, so the spool still drains in arrival order and nothing is
    /// counted twice. A purged in-flight message may nevertheless have reached the broker: it
    /// is sent again (same `id`; consumers de-duplicate).
    fn restart_producer(&mut self, reason: &'static str) {
        // Also when the new client cannot be built: the next attempt waits its turn.
        self.last_restart = Some(Instant::now());
        // A synchronous purge: afterwards every message the producer held is a delivery report
        // waiting to be served. Serve them all before the handle goes away with its queue.
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + PURGE_WAIT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
        }
        self.handle_reports();
        let ctx = Ctx::default();
        let fresh = match new_producer(&self.cfg, &ctx) {
            Ok(p) => p,
            Err(e) => {
                // The configuration was accepted at start, so this is not expected; the next
                // turn tries again.
                tracing::error!(error = %e, reason, "kafka producer could not be recreated");
                return;
            }
        };
        let old = std::mem::replace(&mut self.producer, fresh);
        let old_ctx = std::mem::replace(&mut self.ctx, ctx);
        drop(old);
        // Whatever the drop's own flush served.
        self.apply_reports(old_ctx.take_reports());
        if self.outstanding() {
            // Not expected after a synchronous purge. Spooled records are still on disk, so the
            // drain can simply go on; a direct event without its report is gone with the old
            // handle, and is counted as dropped so that the books still balance.
            let lost = self.counters.in_producer.swap(0, Relaxed);
            self.counters.dropped_error.fetch_add(lost, Relaxed);
            tracing::error!(
                lost,
                drain_in_flight = self.drain_in_flight,
                "kafka producer replaced with delivery reports missing"
            );
            self.drain_in_flight = 0;
            self.drain_sizes.clear();
            self.drain_bytes = 0;
        }
        self.counters.producer_restarts.fetch_add(1, Relaxed);
        tracing::warn!(
            reason,
            restarts = self.counters.producer_restarts.load(Relaxed),
            spool_events = self.spool.len() + self.to_spool.len() as u64,
            "kafka producer replaced"
        );
        // New events go to disk until the new producer has delivered something.
        self.offline = true;
        self.up_since = None;
        // The purged spool records failed through no fault of the broker: resend them now, from
        // the head.
        self.drain_failed = false;
        self.drain_next = None;
        self.retry_at = Instant::now();
        self.backoff = MIN_BACKOFF;
    }

    /// Serves the delivery reports (and other events) librdkafka has ready. `poll(0)` serves at
    /// most one event, that is the reports of one produce response; the drain tops its window
    /// up by what was reported, so serving one event per turn shrank librdkafka's batches to a
    /// few messages and the drain to a few hundred events a second.
    fn serve_events(&self) {
        for _ in 0..MAX_EVENTS_PER_TURN {
            let before = self.ctx.reports_len();
            self.producer.poll(Duration::ZERO);
            if self.ctx.reports_len() == before {
                break;
            }
        }
    }

    fn handle_reports(&mut self) {
        let reports = self.ctx.take_reports();
        self.apply_reports(reports);
    }

    fn apply_reports(&mut self, reports: Vec<Report>) {
        let c = Arc::clone(&self.counters);
        for r in reports {
            match r {
                Report::Delivered(opaque) => {
                    c.delivered.fetch_add(1, Relaxed);
                    self.last_progress = Instant::now();
                    self.stall = self.base_stall();
                    if self.offline {
                        self.offline = false;
                        tracing::info!(
                            spool_events = self.spool.len(),
                            "kafka reachable again; draining the spool"
                        );
                    }
                    if opaque & FROM_SPOOL == 0 {
                        c.in_producer.fetch_sub(1, Relaxed);
                    } else {
                        let seq = (opaque & !FROM_SPOOL) as u64;
                        self.deletes.push(seq);
                        self.drain_resolved(seq);
                    }
                }
                Report::Failed {
                    opaque,
                    key,
                    payload,
                    error,
                } => {
                    c.failed.fetch_add(1, Relaxed);
                    let seq = (opaque & !FROM_SPOOL) as u64;
                    if opaque & FROM_SPOOL == 0 {
                        c.in_producer.fetch_sub(1, Relaxed);
                        match payload {
                            Some(p) if !permanent(&error) => self.to_spool.push((seq, key, p)),
                            _ => {
                                tracing::error!(error = %error, "kafka refused event; dropped");
                                c.dropped_error.fetch_add(1, Relaxed);
                            }
                        }
                    } else {
                        self.drain_resolved(seq);
                        if permanent(&error) {
                            tracing::error!(error = %error, "kafka refused spooled event; dropped");
                            c.dropped_error.fetch_add(1, Relaxed);
                            self.deletes.push(seq);
                        } else {
                            self.drain_failed = true;
                        }
                    }
                    tracing::debug!(
                        error = %error,
                        from_spool = opaque & FROM_SPOOL != 0,
                        "kafka delivery failed"
                    );
                }
            }
        }
    }

    /// Commits this turn's spool appends and removals, in one transaction (durable when it
    /// appends; removals alone are made durable within [`crate::sink::spool::REMOVAL_SYNC`]).
    fn persist(&mut self) {
        let c = &self.counters;
        if !self.to_spool.is_empty() || !self.deletes.is_empty() {
            let n = self.to_spool.len() as u64;
            match self.spool.write(&self.to_spool, &self.deletes) {
                Ok(a) => {
                    self.deletes.clear();
                    c.spooled.fetch_add(a.stored, Relaxed);
                    c.dropped_spool_full.fetch_add(a.refused, Relaxed);
                    if a.refused > 0 {
                        tracing::warn!(
                            refused = a.refused,
                            spool_bytes = self.spool.bytes(),
                            "kafka spool full; events dropped"
                        );
                    }
                }
                Err(e) if n > 0 => {
                    tracing::error!(error = %e, events = n, "kafka spool write failed; events dropped");
                    c.dropped_error.fetch_add(n, Relaxed);
                }
                // Kept for the next turn; at worst the records are sent again after a restart.
                Err(e) => tracing::error!(error = %e, "kafka spool removal failed"),
            }
            self.to_spool.clear();
        } else if let Err(e) = self.spool.sync(false) {
            tracing::error!(error = %e, "kafka spool sync failed");
        }
        c.spool_events.store(self.spool.len(), Relaxed);
        c.spool_bytes.store(self.spool.bytes(), Relaxed);
    }

    /// A spooled record in flight was reported on (acknowledged or failed).
    fn drain_resolved(&mut self, seq: u64) {
        self.drain_in_flight = self.drain_in_flight.saturating_sub(1);
        if let Some(size) = self.drain_sizes.remove(&seq) {
            self.drain_bytes -= size;
        }
    }

    /// Sends the spool, oldest first, keeping a window of up to [`DRAIN_RECORDS`] /
    /// [`DRAIN_BYTES`] in flight: each turn tops the window up from the read position, so the
    /// broker always has work while acknowledged records are removed behind it. A pass starts
    /// at the head; it ends when the spool is empty, or when a record fails: then the sink waits
    /// until the whole window is reported on and starts again from the head (what was
    /// acknowledged meanwhile is gone from it) after a back-off.
    fn drain_step(&mut self) {
        if self.drain_failed {
            if self.drain_in_flight > 0 {
                return;
            }
            self.drain_failed = false;
            self.drain_next = None;
            self.retry_at = Instant::now() + self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            return;
        }
        if self.spool.is_empty() {
            // Everything sent was acknowledged and removed (records in flight are still in the
            // spool): the pass is over, and direct sends may start again.
            self.drain_next = None;
            self.backoff = MIN_BACKOFF;
            return;
        }
        let from = match self.drain_next {
            Some(next) => next,
            None => {
                // Direct sends still unresolved may yet fail into the spool ahead of its head:
                // wait for them before starting a pass.
                if self.drain_in_flight > 0
                    || !self.deletes.is_empty()
                    || self.counters.in_producer.load(Relaxed) > 0
                    || Instant::now() < self.retry_at
                {
                    return;
                }
                0
            }
        };
        let room = DRAIN_RECORDS.saturating_sub(self.drain_in_flight as usize);
        let bytes_room = DRAIN_BYTES.saturating_sub(self.drain_bytes);
        if room == 0 || bytes_room == 0 {
            self.drain_next = Some(from);
            return;
        }
        let batch = match self.spool.read_from(from, room, bytes_room) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "kafka spool read failed");
                self.retry_at = Instant::now() + MAX_BACKOFF;
                if self.drain_in_flight == 0 {
                    self.drain_next = None;
                }
                return;
            }
        };
        let mut next = from;
        for e in &batch {
            let rec = BaseRecord::with_opaque_to(&self.cfg.topic, e.seq as usize | FROM_SPOOL)
                .key(&e.key)
                .payload(&e.payload);
            match self.producer.send(rec).err().map(|(e, _)| e) {
                None => {
                    let size = e.key.len() + e.payload.len();
                    self.drain_in_flight += 1;
                    self.drain_sizes.insert(e.seq, size);
                    self.drain_bytes += size;
                }
                Some(err) if permanent(&err) => {
                    tracing::error!(error = %err, "kafka refused spooled event; dropped");
                    self.counters.dropped_error.fetch_add(1, Relaxed);
                    self.deletes.push(e.seq);
                }
                // Local queue full: the rest waits for a later turn.
                Some(_) => break,
            }
            next = e.seq + 1;
        }
        if next == from && self.drain_in_flight == 0 {
            // Nothing could be handed over and nothing is in flight: give librdkafka a moment.
            self.drain_next = None;
            self.retry_at = Instant::now() + self.backoff;
        } else {
            self.drain_next = Some(next);
            self.backoff = MIN_BACKOFF;
        }
    }

    fn outstanding(&self) -> bool {
        self.counters.in_producer.load(Relaxed) > 0 || self.drain_in_flight > 0
    }

    /// Shutdown: wait for acknowledgements within the grace period, then spool the rest.
    fn finish(mut self) {
        self.closed.store(true, Relaxed);
        let grace = Duration::from_millis(self.grace_ms.load(Relaxed));
        let start = Instant::now();
        let deadline = start + grace.mul_f64(0.8);
        // Events that raced with `closed` are still taken.
        self.receive(None);
        self.persist();
        while self.outstanding() && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
            self.handle_reports();
            self.persist();
        }
        if self.outstanding() {
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let hard = Instant::now() + Duration::from_secs(1);
            while self.outstanding() && Instant::now() < hard {
                self.producer.poll(Duration::from_millis(10));
                self.handle_reports();
            }
        }
        self.receive(None);
        self.persist();
        if let Err(e) = self.spool.sync(true) {
            tracing::error!(error = %e, "kafka spool sync failed");
        }
        tracing::info!(
            spool_events = self.spool.len(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "kafka sink flushed"
        );
    }
}

/// Synthetic events for the Kafka tests, the feeder example and the benchmark (the proxy is
/// not needed to exercise the sink).
#[doc(hidden)]
pub mod testing {
    use crate::compare::{DiffKind, Difference, VerdictKind};
    use crate::event::{Event, EventRequest, EventResponse, SCHEMA};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::testing::sample_event;
    use super::*;

    fn unreachable_config(spool: &std::path::Path) -> KafkaConfig {
        // A port nobody listens on: the broker is down from the start.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        KafkaConfig {
            brokers: format!("127.0.0.1:{port}"),
            spool_dir: spool.to_path_buf(),
            delivery_timeout: Duration::from_secs(2),
            ..KafkaConfig::default()
        }
    }

    fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[test]
    fn without_a_broker_everything_is_spooled_and_recovered_by_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = unreachable_config(dir.path());
        let sink = KafkaSink::start(cfg.clone()).unwrap();
        for n in 0..50 {
            sink.publish(&Arc::new(sample_event(&format!("e{n}"), "GET /a", 100)));
        }
        assert!(
            wait_until(20, || {
                let s = sink.stats();
                s.queued == 0 && s.in_producer == 0 && s.spool_events == 50
            }),
            "{:?}",
            sink.stats()
        );
        sink.shutdown(Duration::from_millis(500));
        let s = sink.stats();
        assert_eq!(
            (s.detected, s.spooled, s.delivered, s.dropped()),
            (50, 50, 0, 0)
        );
        assert!(s.balanced(), "{s:?}");
        drop(sink);

        let again = KafkaSink::start(cfg).unwrap();
        let s = again.stats();
        assert_eq!((s.recovered, s.spool_events), (50, 50), "{s:?}");
        assert!(s.balanced(), "{s:?}");
        // Still no broker: shutdown gives up on the drain batch and the spool keeps it all.
        again.shutdown(Duration::from_millis(200));
        let s = again.stats();
        assert_eq!((s.spool_events, s.delivered), (50, 0), "{s:?}");
        assert!(s.balanced(), "{s:?}");
    }

    #[test]
    fn after_shutdown_events_are_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sink = KafkaSink::start(unreachable_config(dir.path())).unwrap();
        sink.shutdown(Duration::from_millis(100));
        assert!(!sink.publish(&Arc::new(sample_event("late", "GET /a", 10))));
        let s = sink.stats();
        assert_eq!((s.detected, s.dropped_closed), (1, 1));
        assert!(s.balanced(), "{s:?}");
    }

    #[test]
    fn options_override_our_settings_and_bad_ones_fail_at_start() {
        let mut cfg = KafkaConfig::default();
        cfg.options.insert("acks".into(), "1".into());
        assert_eq!(cfg.client_config().get("acks"), Some("1"));
        assert_eq!(cfg.client_config().get("enable.idempotence"), Some("true"));
        let dir = tempfile::tempdir().unwrap();
        cfg.spool_dir = dir.path().to_path_buf();
        cfg.options.insert("no.such.setting".into(), "x".into());
        let err = KafkaSink::start(cfg).unwrap_err();
        assert!(err.to_string().contains("no.such.setting"), "{err}");
    }

    #[test]
    fn a_sample_event_is_about_two_kilobytes_when_asked() {
        let n = sample_event("x", "GET /a", 1300).to_json_line().len();
        assert!((1800..2400).contains(&n), "{n}");
    }
}
