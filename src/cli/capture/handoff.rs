//! Where `shadowdiff capture` hands each complete exchange besides the counters: with
//! `--candidate`, to a recorded-pair source ([`crate::app::Recorded`], the proxy's shadow policy
//! and the one pipeline), compared with the **captured** primary answer; with `--record`, to a
//! recorder writing `shadowdiff.recording.v1`.

use super::super::CaptureArgs;
use crate::app::{Recorded, Settings};
use crate::capture::CapturedExchange;
use crate::config::Config;
use crate::ingest::recorded::{RecordedPair, RecordedShadows};
use crate::record::Recording;
use crate::record::writer::{RecordConfig, RecordCounters, Recorder};
use crate::stats::Stats;
use crate::stats::noise::NoiseModel;
use anyhow::Context;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

/// Pairs in flight at once when a file is read (each also waits for a `shadow.max_in_flight`
/// permit): a file is read far faster than any candidate answers, and nothing of it may be lost.
const FILE_IN_FLIGHT: usize = 64;

/// The comparison side: the recorded-pair source and how pairs enter it.
pub(super) struct Compare {
    app: Option<Recorded>,
    stats: Arc<Stats>,
    noise: Option<Arc<NoiseModel>>,
    counters: Arc<crate::ingest::Counters>,
    shadows: Arc<RecordedShadows>,
    /// Live: a pair never waits (a full `max_in_flight` is a `shadow_queue_full` skip, counted,
    /// as on the proxy's request path). From a file: it waits for a slot, so none is lost.
    live: bool,
    slots: Arc<Semaphore>,
}

/// What happens to each complete exchange beyond counting it.
#[derive(Default)]
pub(super) struct Handoff {
    pub(super) compare: Option<Compare>,
    recorder: Option<Recorder>,
    /// Whether the recorder may block (reading a file: every exchange is written).
    record_waits: bool,
}

impl Handoff {
    /// `--candidate`/`--secondary` and `--record` as the config and flags say. Call it inside
    /// the runtime (`handle`): the shadow I/O thread starts here.
    pub(super) fn start(args: &CaptureArgs, cfg: &Config, live: bool) -> anyhow::Result<Self> {
        let mut h = Handoff {
            record_waits: !live,
            ..Handoff::default()
        };
        if let Some(path) = &args.record {
            let rc = RecordConfig {
                path: path.clone(),
                sample: 1.0,
                ..RecordConfig::default()
            };
            h.recorder = Some(
                Recorder::open(&rc, &cfg.redact, cfg.shadow.max_body_bytes)
                    .with_context(|| format!("cannot record to {}", path.display()))?,
            );
        }
        if cfg.candidate.is_some() {
            let settings = Settings::load(cfg.clone()).map_err(|e| {
                super::super::print_problems(&e);
                anyhow::anyhow!("the config's rules do not load")
            })?;
            let app = Recorded::start(settings, "capture", false)?;
            h.compare = Some(Compare {
                shadows: app.shadows().clone(),
                stats: app.stats().clone(),
                noise: app.noise().cloned(),
                counters: app.counters(),
                app: Some(app),
                live,
                slots: Arc::new(Semaphore::new(FILE_IN_FLIGHT)),
            });
        } else if cfg.secondary.is_some() {
            anyhow::bail!("--secondary needs --candidate (or candidate: in the config)");
        }
        Ok(h)
    }

    /// The statistics comparisons are counted in, and the noise model, with `--candidate`.
    pub(super) fn stats(&self) -> Option<(Arc<Stats>, Option<Arc<NoiseModel>>)> {
        let c = self.compare.as_ref()?;
        Some((c.stats.clone(), c.noise.clone()))
    }

    /// `/metrics` sources: the source's counters (skips, in flight) and the recorder's.
    pub(super) fn metrics(&self) -> Vec<Arc<dyn crate::admin::MetricsSource>> {
        let mut v: Vec<Arc<dyn crate::admin::MetricsSource>> = Vec::new();
        if let Some(c) = &self.compare {
            v.push(c.counters.clone());
        }
        if let Some(r) = &self.recorder {
            v.push(r.counters());
        }
        v
    }

    /// The recorder's counters, for the summary.
    pub(super) fn record_counters(&self) -> Option<Arc<RecordCounters>> {
        self.recorder.as_ref().map(|r| r.counters())
    }

    /// Called by the capture loop (a plain thread, not the runtime's) for each complete exchange.
    pub(super) fn exchange(&mut self, handle: &Handle, x: &CapturedExchange) {
        let (ts, request, primary) = (x.ts(), x.to_request(), x.to_primary());
        if let Some(r) = &self.recorder {
            let rec = Recording::new(ts, "capture", &request, &primary);
            if self.record_waits {
                r.write_waiting(rec);
            } else {
                r.write(rec);
            }
        }
        let Some(c) = &self.compare else {
            return;
        };
        let pair = RecordedPair {
            ts,
            request,
            primary,
        };
        if c.live {
            let _entered = handle.enter();
            // Refusals are counted by the source (skip reasons), as the proxy counts them.
            let _ = c.shadows.try_shadow(pair);
            return;
        }
        let Ok(slot) = handle.block_on(c.slots.clone().acquire_owned()) else {
            return;
        };
        let shadows = c.shadows.clone();
        handle.spawn(async move {
            shadows.shadow(pair).await;
            drop(slot);
        });
    }

    /// The capture ended: waits for the comparisons in flight, drains the pipeline, flushes the
    /// recorder; the statistics stay readable.
    pub(super) fn finish(&mut self, handle: &Handle, grace: std::time::Duration) {
        if let Some(c) = &mut self.compare {
            let n = u32::try_from(FILE_IN_FLIGHT).unwrap_or(u32::MAX);
            let _ = handle.block_on(c.slots.acquire_many(n));
            if let Some(app) = c.app.take() {
                handle.block_on(app.finish());
            }
        }
        if let Some(r) = &self.recorder {
            r.shutdown(grace);
        }
    }
}
