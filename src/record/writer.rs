//! The `record:` section and the [`Recorder`]: a sample of live exchanges written as a
//! recording. The proxy's comparison workers hand it each shadowed exchange
//! ([`crate::pipeline::Tap`]); it samples, redacts and serialises there, off the request path,
//! and enqueues the line on the bounded queue of a [`LineWriter`] (a thread of its own, rotation
//! by size, `keep` files). A full queue drops the line and counts it.

use super::{RecordRedaction, Recording};
use crate::exchange::{Exchange, Request, Response};
use crate::pipeline::Tap;
use crate::pipeline::metrics::{MetricFamily, MetricsSource};
use crate::redact::RedactConfig;
use crate::sink::file::{FileSinkConfig, FileSinkCounters, FileSinkError, LineWriter};
use crate::units::de;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// `record:` — the proxy records a sample of the exchanges it shadows, as
/// `shadowdiff.recording.v1` (DESIGN.md). Default: off (`record: null`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Default `exchanges.jsonl` (relative to the working directory).
    pub path: PathBuf,
    /// Fraction of shadowed exchanges recorded, `0.01` or `1%`. Default `1%`.
    #[serde(deserialize_with = "de::rate")]
    pub sample: f64,
    /// Rotate when the file would exceed this; at least 1 byte, as the file sink's. Default
    /// `100MiB`.
    #[serde(deserialize_with = "de::positive_size")]
    pub rotate_bytes: usize,
    /// Rotated files kept (`path.1` … `path.{keep}`). Default `5`.
    #[serde(deserialize_with = "de::positive")]
    pub keep: usize,
    /// Exchanges waiting for the writer at most; beyond, dropped and counted. Default `1024`.
    #[serde(deserialize_with = "de::positive")]
    pub queue: usize,
    /// Mask what `redact:` hides, as in events. Default `true`; `false` records values as sent
    /// (credentials included) and must be set explicitly.
    pub redact: bool,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("exchanges.jsonl"),
            sample: 0.01,
            rotate_bytes: 100 << 20,
            keep: 5,
            queue: 1024,
            redact: true,
        }
    }
}

/// What became of each exchange offered to the recorder.
#[derive(Debug, Default)]
pub struct RecordCounters {
    /// Not in the sample.
    pub sampled_out: AtomicU64,
    /// The writer's own: written, dropped (queue full), errors.
    pub writer: Arc<FileSinkCounters>,
}

impl RecordCounters {
    /// `(outcome, count)` pairs in a stable order.
    pub fn snapshot(&self) -> [(&'static str, u64); 4] {
        let [w, d, e] = self.writer.snapshot();
        [
            w,
            d,
            e,
            ("sampled_out", self.sampled_out.load(Ordering::Relaxed)),
        ]
    }
}

/// Name of the recorder's counter family.
pub const RECORD_METRIC: &str = "shadowdiff_record_exchanges_total";

impl MetricsSource for RecordCounters {
    fn collect(&self) -> Vec<MetricFamily> {
        let f = MetricFamily::counter(
            RECORD_METRIC,
            "Exchanges offered to the recorder (record:), by outcome: written, dropped (queue full), error, sampled_out",
        );
        vec![
            self.snapshot()
                .iter()
                .fold(f, |f, (o, n)| f.with(&[("outcome", o)], *n as f64)),
        ]
    }
}

/// Writes recordings: a sample of exchanges ([`Recorder::offer`], the proxy's `record:`) or
/// every one ([`Recorder::write`], `capture --record`).
pub struct Recorder {
    sample: f64,
    /// `None` with `record.redact: false`. A slot: a reload swaps in the new `redact:`
    /// ([`Recorder::set_redaction`]), so a value newly hidden stops reaching recordings too.
    redaction: arc_swap::ArcSwapOption<RecordRedaction>,
    /// Most bytes a body is decoded to for redaction (kept to rebuild it at a reload).
    decode_limit: usize,
    writer: LineWriter,
    counters: Arc<RecordCounters>,
}

impl Recorder {
    /// Opens (appending to) `cfg.path`; `redact` is the `redact:` section, `max_body_bytes`
    /// the largest body kept for comparison (bodies are decoded up to 64 times that to be
    /// redacted).
    pub fn open(
        cfg: &RecordConfig,
        redact: &RedactConfig,
        max_body_bytes: usize,
    ) -> Result<Recorder, FileSinkError> {
        let writer = LineWriter::open(
            &FileSinkConfig {
                path: cfg.path.clone(),
                rotate_bytes: cfg.rotate_bytes,
                keep: cfg.keep,
                queue: cfg.queue,
            },
            "record",
        )?;
        let counters = Arc::new(RecordCounters {
            sampled_out: AtomicU64::new(0),
            writer: writer.counters(),
        });
        let decode_limit = max_body_bytes.saturating_mul(64);
        Ok(Recorder {
            sample: cfg.sample,
            redaction: arc_swap::ArcSwapOption::new(
                cfg.redact
                    .then(|| Arc::new(RecordRedaction::new(redact, decode_limit))),
            ),
            decode_limit,
            writer,
            counters,
        })
    }

    pub fn counters(&self) -> Arc<RecordCounters> {
        self.counters.clone()
    }

    /// Redacts what is written from now on with `redact` (a reload); nothing changes when the
    /// recordings are not redacted (`record.redact: false`, restart-only).
    pub fn set_redaction(&self, redact: &RedactConfig) {
        if self.redaction.load().is_some() {
            self.redaction.store(Some(Arc::new(RecordRedaction::new(
                redact,
                self.decode_limit,
            ))));
        }
    }

    /// Records the exchange if it falls in the sample; `true` when it was enqueued.
    pub fn offer(
        &self,
        ts: SystemTime,
        source: &str,
        request: &Request,
        primary: &Response,
    ) -> bool {
        if self.sample < 1.0 && rand::random::<f64>() >= self.sample {
            self.counters.sampled_out.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.write(Recording::new(ts, source, request, primary))
    }

    /// Redacts (unless `record.redact: false`) and enqueues one recording, whatever the sample;
    /// `true` when it was enqueued, `false` when dropped (counted).
    pub fn write(&self, mut rec: Recording) -> bool {
        if let Some(r) = &*self.redaction.load() {
            r.apply(&mut rec);
        }
        self.writer.try_line(rec.to_json_line())
    }

    /// [`Recorder::write`] that waits for room in the queue instead of dropping: reading a
    /// capture file, where every exchange is wanted and nothing is on a request path.
    pub fn write_waiting(&self, mut rec: Recording) -> bool {
        if let Some(r) = &*self.redaction.load() {
            r.apply(&mut rec);
        }
        self.writer.line_waiting(rec.to_json_line())
    }

    /// Writes what is queued and stops the writer, waiting at most `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.writer.shutdown(grace);
    }
}

impl Tap for Recorder {
    fn exchange(&self, ex: &Exchange) {
        self.offer(ex.ts, ex.source, &ex.request, &ex.primary);
    }

    fn shutdown(&self, grace: Duration) {
        Recorder::shutdown(self, grace);
    }
}
