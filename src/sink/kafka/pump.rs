//! The Kafka sink's pump thread: it owns the producer and the spool, takes events from the
//! sink's bounded channel, hands them to librdkafka or the spool, drains the spool in order
//! (see the module documentation of [`super`] and docs/kafka.md), and replaces a producer that
//! failed fatally or stalled (`watchdog`).

use super::Counters;
use super::config::KafkaConfig;
use super::producer::{self, Ctx, Opaque, PAYLOAD_KEPT, Report, permanent};
use crate::event::Event;
use crate::sink::spool::Spool;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

mod watchdog;

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

/// Delivery opaque: the event's sequence number, with [`FROM_SPOOL`] set when it was sent from
/// the spool (then the spool still holds it, and a failure report need not carry the payload)
/// rather than directly (then only librdkafka does).
const FROM_SPOOL: Opaque = PAYLOAD_KEPT;

/// This producer in log lines (`producer` field); the statistics publisher's is `stats`.
const PRODUCER_NAME: &str = "events";

pub(super) struct Pump {
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
    /// Builds the producer (a bad setting fails here, before the thread starts) around the
    /// sink's channel, spool and shared state.
    pub(super) fn new(
        cfg: KafkaConfig,
        rx: Receiver<Arc<Event>>,
        spool: Spool,
        counters: Arc<Counters>,
        closed: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
        grace_ms: Arc<AtomicU64>,
    ) -> Result<Pump, KafkaError> {
        let ctx = Ctx::new(PRODUCER_NAME);
        let producer = producer::create(&cfg.client_config(), &ctx)?;
        Ok(Pump {
            cfg,
            rx,
            ctx,
            producer,
            spool,
            counters,
            closed,
            stop,
            grace_ms,
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
        })
    }

    pub(super) fn run(mut self) {
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
