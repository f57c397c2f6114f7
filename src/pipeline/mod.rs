//! The seam between sources and everything downstream of the comparator.
//!
//! - A source hands [`crate::exchange::Exchange`]s to the comparison [`pool`] with
//!   `try_submit`, which never blocks; the bytes an exchange holds are counted against the
//!   process-wide [`budget`].
//! - The pool's workers run the pure comparator, let a [`Refine`] (the learned noise model)
//!   adjust the verdict, build the published event and hand one [`Observation`] to a [`Sink`].
//! - Everything downstream (statistics, the JSONL file, Kafka) is a [`Sink`]: it observes each
//!   verdict and must return at once (enqueue on a bounded queue, count what it drops), because
//!   it is called from the comparison workers.
//!
//! This module names no implementation: sinks live in [`crate::sink`] and [`crate::stats`],
//! sources in [`crate::ingest`], and [`crate::app`] wires them together.

pub mod budget;
mod config;
pub mod metrics;
pub mod pool;

use crate::compare::{Comparator, Verdict};
use crate::event::Event;
use crate::redact::Redaction;
use arc_swap::ArcSwap;
pub use config::CompareConfig;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One verdict as sinks see it. Skipped exchanges are observed too (verdict `skipped` with its
/// reason), so every count adds up.
///
/// Whatever a sink may publish by counting is redacted already: `endpoint` (named through the
/// pipeline's [`Pipeline::redaction`]) and the paths and fields of the verdict's differences
/// (`Redaction::name_differences`). The differences' values are raw; only `event` publishes them.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub ts: SystemTime,
    pub endpoint: &'a str,
    pub verdict: &'a Verdict,
    pub primary_latency: Option<Duration>,
    pub candidate_latency: Option<Duration>,
    pub secondary_latency: Option<Duration>,
    /// Time between the earliest and latest of the primary, candidate and secondary sends.
    pub send_skew: Option<Duration>,
    /// The published form, built once for verdicts that are published (mismatch, candidate_error,
    /// noise); `None` for matches and skips, which are only counted.
    pub event: Option<&'a Arc<Event>>,
}

pub trait Sink: Send + Sync {
    /// Takes one observation. Must not block.
    fn observe(&self, o: &Observation<'_>);

    /// Flushes what is buffered, waiting at most `grace`. Called once at shutdown.
    fn shutdown(&self, grace: Duration) {
        let _ = grace;
    }
}

/// A stateful step between the pure comparator and the sinks: it may learn from a verdict and
/// adjust it (the learned noise model, [`crate::stats::noise::NoiseModel`], marks fields that
/// the secondary shows to be noisy). Called on the comparison workers; must not block.
pub trait Refine: Send + Sync {
    fn refine(&self, endpoint: &str, v: &mut Verdict);
}

/// Sees each exchange a comparison worker takes, before it is compared: the proxy's recorder
/// (`record:`, [`crate::record::writer::Recorder`]). Called on the comparison workers, off the
/// request path; must not block.
pub trait Tap: Send + Sync {
    fn exchange(&self, ex: &crate::exchange::Exchange);

    /// Flushes what is buffered, waiting at most `grace`. Called once at shutdown.
    fn shutdown(&self, grace: Duration) {
        let _ = grace;
    }
}

/// Several sinks behind one.
#[derive(Default, Clone)]
pub struct Fanout {
    sinks: Vec<Arc<dyn Sink>>,
}

impl Fanout {
    pub fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self { sinks }
    }

    pub fn push(&mut self, s: Arc<dyn Sink>) {
        self.sinks.push(s);
    }
}

impl Sink for Fanout {
    fn observe(&self, o: &Observation<'_>) {
        for s in &self.sinks {
            s.observe(o);
        }
    }

    fn shutdown(&self, grace: Duration) {
        for s in &self.sinks {
            s.shutdown(grace);
        }
    }
}

/// What an exchange is judged and published with: the comparator (the compiled rules) and the
/// redaction. It is what a reload replaces ([`Pipeline::swap_stage`], issue 14): swapped whole,
/// so an exchange is never judged by the new rules and published through the old redaction.
pub struct Stage {
    pub comparator: Comparator,
    pub redaction: Redaction,
    /// 0 at start, one more at each swap: what was derived from an older stage (the grouper's
    /// cached endpoint names) knows to derive it again.
    pub generation: u64,
}

impl Stage {
    pub fn new(comparator: Comparator, redaction: Redaction) -> Self {
        Self {
            comparator,
            redaction,
            generation: 0,
        }
    }
}

/// The running pipeline a source feeds: the comparison pool and the sinks behind it. Built once
/// by [`crate::app`]; a source only submits to it. Stopping follows the data: the source stops
/// first (it alone watches the shutdown signal), then [`Pipeline::stop`] drains the pool and
/// flushes the sinks.
pub struct Pipeline {
    pool: pool::Pool,
    sink: Arc<dyn Sink>,
    /// The workers load it once per job: `ArcSwap::load` takes no lock, so a reload never
    /// stalls a comparison, and a job started before a swap finishes on the stage it loaded.
    stage: Arc<ArcSwap<Stage>>,
    tap: Option<Arc<dyn Tap>>,
}

impl Pipeline {
    /// Starts the comparison pool (`workers` threads at niceness `nice`, `queue` jobs) in front
    /// of `ctx.sink`.
    pub fn start(
        ctx: pool::Context,
        workers: usize,
        queue: usize,
        nice: i32,
    ) -> std::io::Result<Pipeline> {
        let sink = ctx.sink.clone();
        let stage = ctx.stage.clone();
        let tap = ctx.tap.clone();
        let pool = pool::Pool::start(ctx, workers, queue, nice)?;
        Ok(Pipeline {
            pool,
            sink,
            stage,
            tap,
        })
    }

    /// The stage in force now. Its redaction is the one events are published through: a source
    /// names what it hands over with it (endpoint names, `ingest::grouping`) and logs what it
    /// quotes from traffic through it, so nothing it publishes is less redacted than an event.
    pub fn stage(&self) -> arc_swap::Guard<Arc<Stage>> {
        self.stage.load()
    }

    /// The stage slot itself, for what derives from the stage on its own hot path (the
    /// grouper's endpoint names).
    pub fn stages(&self) -> Arc<ArcSwap<Stage>> {
        self.stage.clone()
    }

    /// Replaces the comparator and the redaction for every exchange a worker takes from now on
    /// (a reload); returns the new stage's generation.
    pub fn swap_stage(&self, comparator: Comparator, redaction: Redaction) -> u64 {
        let generation = self.stage.load().generation + 1;
        self.stage.store(Arc::new(Stage {
            comparator,
            redaction,
            generation,
        }));
        generation
    }

    /// Hands a job over without blocking; a full queue gives it back (the caller counts it).
    pub fn try_submit(&self, job: pool::Job) -> Result<(), pool::Job> {
        self.pool.try_submit(job)
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.pool.queued()
    }

    /// Drains what is queued, stops the workers, then lets the sinks flush within `grace`.
    /// Blocks: call it from a blocking thread once the source has stopped submitting.
    pub fn stop(&self, grace: Duration) {
        self.pool.stop();
        self.sink.shutdown(grace);
        if let Some(t) = &self.tap {
            t.shutdown(grace);
        }
    }
}
