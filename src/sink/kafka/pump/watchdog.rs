//! The pump's producer watchdog (docs/kafka.md, "Stuck and failed producers"): a producer that
//! failed fatally, or that stays connected without any acknowledgement for a stall period, is
//! replaced by a new one, and what the old one held goes back through the spool.

use super::{MIN_BACKOFF, PRODUCER_NAME, Pump};
use crate::sink::kafka::config::CLIENT_STATS_INTERVAL_MS;
use crate::sink::kafka::producer::{self, Ctx};
use rdkafka::producer::{Producer, PurgeConfig};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The stuck-producer watchdog's longest stall period: it doubles after each restart that
/// brought no acknowledgement (a broker that refuses every producer, a missing topic), so such
/// a case costs a restart every few minutes, not a restart loop.
const MAX_STALL: Duration = Duration::from_secs(300);
/// The shortest time between two producer replacements after fatal errors.
const MIN_RESTART_GAP: Duration = Duration::from_secs(1);
/// How long replacing a producer waits for the old one's purge reports.
const PURGE_WAIT: Duration = Duration::from_secs(2);

impl Pump {
    pub(super) fn check_broker_state(&mut self) {
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
        if self.ctx.take_brokers_down() && !self.offline {
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
    pub(super) fn base_stall(&self) -> Duration {
        self.cfg
            .delivery_timeout
            .clamp(Duration::from_millis(CLIENT_STATS_INTERVAL_MS), MAX_STALL)
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
    pub(super) fn check_stall(&mut self) {
        let now = Instant::now();
        if !self.outstanding() && self.spool.is_empty() && self.to_spool.is_empty() {
            self.last_progress = now;
        }
        match (self.ctx.broker_up(), self.up_since) {
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
        let (idemp_state, producer_id, producer_epoch) = self.ctx.idempotence();
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
    pub(super) fn restart_producer(&mut self, reason: &'static str) {
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
        let ctx = Ctx::new(PRODUCER_NAME);
        let fresh = match producer::create(&self.cfg.client_config(), &ctx) {
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
}
