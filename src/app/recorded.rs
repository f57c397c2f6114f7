//! The wiring of a recorded-pair source (`replay`; `capture --candidate`): the same statistics,
//! noise model, sinks and comparison pipeline as the proxy's ([`super::Sinks`],
//! [`super::start_pipeline`]), with [`RecordedShadows`] as the source in front.

use super::{AppError, Settings, Sinks, StageConfig, start_pipeline, stop_pipeline};
use crate::config::ConfigErrors;
use crate::ingest::Counters;
use crate::ingest::proxy::ProxyError;
use crate::ingest::recorded::{RecordedConfig, RecordedShadows};
use crate::pipeline::{Pipeline, Refine, Sink};
use crate::stats::Stats;
use crate::stats::noise::NoiseModel;
use crate::yaml::Problem;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A recorded-pair source on its own pipeline.
pub struct RecordedSource {
    shadows: Arc<RecordedShadows>,
    pipeline: Arc<Pipeline>,
    grace: Duration,
}

/// Starts the comparison pipeline (comparator, redaction, `refine`, then `sink`) and a
/// [`RecordedShadows`] in front of it. [`Recorded::start`] calls this after building the sinks;
/// tests call it with sinks of their own.
pub fn start_recorded(
    cfg: RecordedConfig,
    stage: &StageConfig,
    instance: &str,
    sink: Arc<dyn Sink>,
    refine: Option<Arc<dyn Refine>>,
    grace: Duration,
) -> Result<RecordedSource, AppError> {
    let pipeline = start_pipeline(stage, &cfg.rules, instance, sink, refine, None)?;
    let shadows = RecordedShadows::new(cfg, pipeline.clone()).map_err(ProxyError::from)?;
    Ok(RecordedSource {
        shadows,
        pipeline,
        grace,
    })
}

impl RecordedSource {
    /// Where pairs go in.
    pub fn shadows(&self) -> &Arc<RecordedShadows> {
        &self.shadows
    }

    /// Waits for the shadows in flight (abandoning them after the grace), then drains the
    /// comparison queue and flushes the sinks.
    pub async fn finish(self) {
        self.shadows.drain(self.grace).await;
        stop_pipeline(self.pipeline, self.grace).await;
    }
}

/// A recorded-pair source with everything behind it: statistics, the learned noise model (with
/// a secondary), the sinks of the config file. Without a sink configured, events are only
/// counted (a replay in CI must not leave an event file behind unless asked to).
pub struct Recorded {
    source: RecordedSource,
    stats: Arc<Stats>,
    noise: Option<Arc<NoiseModel>>,
}

impl Recorded {
    /// `live_primary`: send each request to the config's `primary` too and compare with that
    /// answer (a double run) instead of the recorded one.
    pub fn start(
        settings: Settings,
        source: &'static str,
        live_primary: bool,
    ) -> Result<Recorded, AppError> {
        let Settings {
            config: cfg, rules, ..
        } = settings;
        let Some(candidate) = cfg.candidate.clone() else {
            return Err(AppError::Config(ConfigErrors(vec![Problem::new(
                Path::new("<config>"),
                None,
                "candidate: required (in the config file or as --candidate)".to_string(),
            )])));
        };
        let stats = Arc::new(Stats::new(cfg.stats.clone(), cfg.grouping.max_endpoints));
        let sinks = Sinks::build(&cfg, vec![stats.clone() as Arc<dyn Sink>], false)?;
        let model = Arc::new(NoiseModel::new(cfg.noise, cfg.grouping.max_endpoints));
        let noise = cfg.secondary.is_some().then(|| model.clone());
        let rc = RecordedConfig {
            candidate,
            secondary: cfg.secondary.clone(),
            primary: if live_primary {
                cfg.primary.clone()
            } else {
                None
            },
            shadow: cfg.shadow.clone(),
            rules: Arc::new(rules),
            grouping: cfg.grouping.clone(),
            source,
            tls: cfg.tls.clone(),
        };
        let stage = StageConfig {
            // A replay records nothing: its exchanges are recordings already.
            record: None,
            ..StageConfig::from_config(&cfg)
        };
        let source = start_recorded(
            rc,
            &stage,
            &cfg.instance_name(),
            sinks.sink,
            Some(model as Arc<dyn Refine>),
            cfg.shutdown_grace,
        )?;
        Ok(Recorded {
            source,
            stats,
            noise,
        })
    }

    /// Where pairs go in.
    pub fn shadows(&self) -> &Arc<RecordedShadows> {
        self.source.shadows()
    }

    /// The source's counters (skips by reason, compared, in flight).
    pub fn counters(&self) -> Arc<Counters> {
        self.source.shadows().counters()
    }

    /// The statistics every verdict is counted in.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The learned noise model, when a secondary is configured.
    pub fn noise(&self) -> Option<&Arc<NoiseModel>> {
        self.noise.as_ref()
    }

    /// Drains the source and the pipeline; the statistics stay readable afterwards.
    pub async fn finish(self) -> Arc<Stats> {
        self.source.finish().await;
        self.stats
    }
}
