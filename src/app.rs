//! The one wiring of the application (mini-redis's `server::run`, linkerd's `Config::build →
//! App`). [`Sidecar::start`] turns a validated [`Config`] and its rules into running components:
//! statistics, the learned noise model, the sinks, the comparison pool, the source and the admin
//! server. [`Aggregator::run`] does the same for the fleet view. `shadowdiff proxy`, `demo` and
//! the integration tests all start here, so a setting cannot reach one of them and miss another;
//! a new source (capture, replay) adds only its own start next to the proxy's.
//!
//! Hot reload ([`reload`]): SIGHUP and a change in the config file or the rules folder swap the
//! rules, redaction, sampling and gate thresholds of a running sidecar.
//!
//! Shutdown follows the pipeline (vector's rule): only the source watches the shutdown signal;
//! once it has drained, the comparison pool stops, the sinks flush within the grace period, and
//! the admin server goes last, so `/metrics` can be scraped until the end.

pub mod reload;

use crate::admin::{AdminAccess, AdminConfig, AdminState, MetricsSource};
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions};
use crate::config::{Config, ConfigErrors};
use crate::config::{PublishConfig, RedactConfig};
use crate::ingest::Counters;
use crate::ingest::config::ProxyConfig;
use crate::ingest::proxy::{self, ProxyError, ProxyHandle};
use crate::pipeline::CompareConfig;
use crate::pipeline::{Fanout, Pipeline, Refine, Sink, Stage, Tap, pool};
use crate::record::writer::{RecordConfig, RecordCounters, Recorder};
use crate::redact::Redaction;
use crate::sink::file::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::stats::GateConfig;
use crate::stats::Stats;
use crate::stats::ack::Acknowledgements;
use crate::stats::noise::NoiseModel;
use crate::stats::publisher::{StatsPublisher, StatsPublisherConfig};
use arc_swap::ArcSwap;
use reload::{ReloadCounters, ReloadSource, Reloader, Slots};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why the application could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The settings are invalid (exit 64, as `check-config`).
    #[error("invalid configuration")]
    Config(#[from] ConfigErrors),
    #[error("cannot start the {sink} sink: {reason}")]
    Sink { sink: &'static str, reason: String },
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("cannot start comparison workers: {0}")]
    Workers(std::io::Error),
    #[error("cannot bind the admin address {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin server: {0}")]
    Admin(String),
    #[error(transparent)]
    Acknowledgements(#[from] crate::stats::ack::AckError),
}

/// Everything a sidecar starts from: the validated config (file plus flags) and compiled rules.
pub struct Settings {
    pub config: Config,
    pub rules: RuleSet,
    /// With no sink configured, publish events to the default JSONL file (`proxy`), or only
    /// count them (`demo`, which must not write into the directory it was started from).
    pub default_file_sink: bool,
    /// When the admin address is taken, bind a free loopback port instead of failing (`demo`:
    /// another sidecar may hold 9901).
    pub admin_fallback: bool,
    /// Where SIGHUP and file changes reload from (`proxy`); none: nothing reloads (`demo`).
    pub reload: Option<ReloadSource>,
}

impl Settings {
    /// The settings of `shadowdiff proxy`: loads the rules the config names.
    pub fn load(config: Config) -> Result<Settings, ConfigErrors> {
        let rules = config.load_rules()?;
        Ok(Settings {
            config,
            rules,
            default_file_sink: true,
            admin_fallback: false,
            reload: None,
        })
    }
}

/// The admin address when the config names none.
pub const DEFAULT_ADMIN: SocketAddr = crate::admin::config::DEFAULT_LISTEN;

mod recorded;
pub use recorded::{Recorded, RecordedSource, start_recorded};
mod signals;
pub use signals::{shutdown_signal, signals};

/// The inline proxy on its own pipeline: the source, the comparison pool and the sinks.
pub struct Proxy {
    handle: ProxyHandle,
    pipeline: Arc<Pipeline>,
    grace: Duration,
    /// The recorder, when `record:` is set (a reload swaps its redaction).
    recorder: Option<Arc<Recorder>>,
}

impl Proxy {
    /// The address the proxy listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The source's live counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.handle.counters()
    }

    /// The candidate's circuit breaker.
    pub fn circuit(&self) -> Arc<crate::ingest::circuit::Circuit> {
        self.handle.circuit()
    }

    /// The recorder's counters (`record:`), when one runs.
    pub fn record_counters(&self) -> Option<Arc<RecordCounters>> {
        self.recorder.as_ref().map(|r| r.counters())
    }

    /// Waits for the proxy to drain after its shutdown signal, then stops the pipeline behind it:
    /// the comparison queue drained, the sinks flushed within `shutdown_grace`.
    pub async fn join(self) -> Result<(), AppError> {
        let served = self.handle.join().await;
        stop_pipeline(self.pipeline, self.grace).await;
        Ok(served?)
    }
}

/// Drains the comparison queue and flushes the sinks (and the recorder) within `grace`, off the
/// async threads.
async fn stop_pipeline(pipeline: Arc<Pipeline>, grace: Duration) {
    if tokio::task::spawn_blocking(move || pipeline.stop(grace))
        .await
        .is_err()
    {
        tracing::error!("the pipeline did not stop cleanly");
    }
}

/// The comparison stage's settings: the `compare:`, `grpc:`, `redact:` and `publish:` sections, and
/// `record:` (the proxy's recorder sees each exchange on the comparison workers).
#[derive(Debug, Clone, Default)]
pub struct StageConfig {
    pub compare: CompareConfig,
    /// `grpc:`, with its descriptor set read.
    pub grpc: crate::compare::grpc::GrpcConfig,
    pub redact: RedactConfig,
    pub publish: PublishConfig,
    pub record: Option<RecordConfig>,
}

impl StageConfig {
    /// The stage's sections of a config file.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            compare: cfg.compare.clone(),
            grpc: cfg.grpc.clone(),
            redact: cfg.redact.clone(),
            publish: cfg.publish.clone(),
            record: cfg.record.clone(),
        }
    }
}

/// Starts the comparison pipeline (comparator, redaction, `refine`, then `sink`) and the inline
/// proxy in front of it. [`Sidecar::start`] calls this after building the sinks; tests call it
/// with sinks of their own.
pub async fn start_proxy(
    cfg: ProxyConfig,
    stage: &StageConfig,
    sink: Arc<dyn Sink>,
    refine: Option<Arc<dyn Refine>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Proxy, AppError> {
    // The recorder (`record:`) sees every shadowed exchange on the comparison workers.
    let recorder = match &stage.record {
        Some(rc) => {
            let r = Recorder::open(rc, &stage.redact, cfg.shadow.max_body_bytes).map_err(|e| {
                AppError::Sink {
                    sink: "record",
                    reason: e.to_string(),
                }
            })?;
            tracing::info!(path = %rc.path.display(), sample = rc.sample, "recording a sample of exchanges");
            Some(Arc::new(r))
        }
        None => None,
    };
    let tap = recorder.clone().map(|r| r as Arc<dyn Tap>);
    let pipeline = start_pipeline(stage, &cfg.rules, &cfg.instance, sink, refine, tap)?;
    let grace = cfg.shutdown_grace;
    let handle = proxy::start(cfg, pipeline.clone(), shutdown).await?;
    Ok(Proxy {
        handle,
        pipeline,
        grace,
        recorder,
    })
}

/// The comparison pipeline every source feeds: the comparator with the rules, redaction,
/// `refine`, then `sink` (and `tap` before comparison).
fn start_pipeline(
    f: &StageConfig,
    rules: &Arc<RuleSet>,
    instance: &str,
    sink: Arc<dyn Sink>,
    refine: Option<Arc<dyn Refine>>,
    tap: Option<Arc<dyn Tap>>,
) -> Result<Arc<Pipeline>, AppError> {
    let comparator = Comparator::new(
        rules.clone(),
        CompareOptions {
            max_decoded_bytes: f.compare.max_decoded_bytes,
            max_differences: f.compare.max_differences,
            grpc: f.grpc.schema.clone(),
        },
    );
    let redaction = Redaction::from_config(&f.redact, f.publish.max_body_bytes);
    let ctx = pool::Context {
        stage: Arc::new(ArcSwap::from_pointee(Stage::new(comparator, redaction))),
        instance: instance.to_string(),
        sink,
        refine,
        tap,
    };
    let pipeline = Pipeline::start(ctx, f.compare.workers, f.compare.queue, f.compare.nice)
        .map_err(AppError::Workers)?;
    Ok(Arc::new(pipeline))
}

/// A running sidecar: the proxy, its pipeline and the admin server.
pub struct Sidecar {
    proxy: Proxy,
    stats: Arc<Stats>,
    noise: Option<Arc<NoiseModel>>,
    admin_addr: SocketAddr,
    admin_stop: oneshot::Sender<()>,
    admin: JoinHandle<Result<(), crate::admin::AdminError>>,
    reloader: Option<Reloader>,
}

impl Sidecar {
    /// Builds and starts every component; the proxy serves until `shutdown` completes, then
    /// drains within `shutdown_grace` (see [`Sidecar::join`]).
    pub async fn start(
        settings: Settings,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Sidecar, AppError> {
        let Settings {
            config: cfg,
            rules,
            default_file_sink,
            admin_fallback,
            reload,
        } = settings;
        // What restart-only changes are told against at a reload.
        let running = reload.as_ref().map(|_| cfg.clone());
        // The admin settings as they stand after `--admin`: a non-loopback address without a
        // token, or an unreadable token, stops the start before anything opens.
        let admin_cfg = cfg.admin.clone().unwrap_or_default();
        let access = AdminAccess::from_config(&admin_cfg).map_err(ConfigErrors::from)?;
        let acks = acknowledgements(&cfg, &admin_cfg, default_file_sink)?;
        let stats = Arc::new(
            Stats::new(cfg.stats.clone(), cfg.grouping.max_endpoints).with_acknowledgements(acks),
        );
        // The statistics sink joins the fan-out so the admin server can read what it counts.
        let sinks = Sinks::build(
            &cfg,
            vec![stats.clone() as Arc<dyn Sink>],
            default_file_sink,
        )?;
        let admin = admin_cfg.listen;
        let gate = cfg.gate.clone();
        // The learned noise model: applied to every verdict (a no-op without a secondary answer),
        // and served by the admin API only when a secondary feeds it.
        let model = Arc::new(NoiseModel::new(cfg.noise, cfg.grouping.max_endpoints));
        let noise = cfg.secondary.is_some().then(|| model.clone());
        let pc = cfg.into_proxy(rules)?;
        // The admin address is bound before the proxy opens its port: a taken admin port fails
        // the start with nothing serving.
        let listener = bind_admin(admin, admin_fallback).await?;
        let admin_addr = listener
            .local_addr()
            .map_err(|source| AppError::AdminBind {
                addr: admin,
                source,
            })?;
        let stage = StageConfig::from_config(&cfg);
        let proxy = start_proxy(
            pc,
            &stage,
            sinks.sink,
            Some(model as Arc<dyn Refine>),
            shutdown,
        )
        .await?;

        let ready = Arc::new(AtomicBool::new(false));
        let reloads = Arc::new(ReloadCounters::default());
        let mut state = admin_state(stats.clone(), ready.clone(), &gate, &stage)
            .with_access(access)
            .with_metrics_source(proxy.counters() as Arc<dyn MetricsSource>)
            .with_metrics_source(reloads.clone());
        if let Some(r) = proxy.record_counters() {
            state = state.with_metrics_source(r);
        }
        let reloader = match (reload, running) {
            (Some(src), Some(running)) => {
                let slots = Slots {
                    pipeline: Some(proxy.pipeline.clone()),
                    mirror: Some(proxy.handle.mirror()),
                    recorder: proxy.recorder.clone(),
                    gate: state.gate.clone(),
                    redaction: state.redaction.clone(),
                };
                Some(Reloader::start(src, running, slots, reloads).map_err(AppError::Workers)?)
            }
            _ => None,
        };
        for s in sinks.metrics {
            state = state.with_metrics_source(s);
        }
        state.noise = noise.clone();
        log_admin(admin_addr, &admin_cfg);
        let (admin_stop, stop_rx) = oneshot::channel::<()>();
        let admin = tokio::spawn(crate::admin::serve(listener, state, async move {
            let _ = stop_rx.await;
        }));
        ready.store(true, Ordering::Release);
        Ok(Sidecar {
            proxy,
            stats,
            noise,
            admin_addr,
            admin_stop,
            admin,
            reloader,
        })
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The statistics every verdict is counted in.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The learned noise model, when a secondary is configured.
    pub fn noise(&self) -> Option<&Arc<NoiseModel>> {
        self.noise.as_ref()
    }

    /// The source's live counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.proxy.counters()
    }

    /// Waits until the proxy and its pipeline have drained (its shutdown signal came), then
    /// stops the admin server.
    pub async fn join(self) -> Result<(), AppError> {
        let served = self.proxy.join().await;
        if let Some(r) = self.reloader {
            let _ = tokio::task::spawn_blocking(move || r.stop()).await;
        }
        let _ = self.admin_stop.send(());
        let admin = self.admin.await;
        served?;
        match admin {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AppError::Admin(e.to_string())),
            Err(e) => Err(AppError::Admin(e.to_string())),
        }
    }
}

/// The fleet view (`shadowdiff aggregate`): statistics merged from every sidecar's Kafka topics,
/// served by the same admin API and UI, with the gate defaults of the config file.
pub struct Aggregator;

impl Aggregator {
    /// Runs until `shutdown` completes. With `reload`, SIGHUP and a change of the config file
    /// swap the gate's thresholds and the redaction ([`reload`]; the rest takes a restart).
    pub async fn run(
        cfg: &Config,
        ac: crate::aggregate::AggregateConfig,
        reload: Option<ReloadSource>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), crate::aggregate::AggregateError> {
        // Same rules as a sidecar's admin server, for the address the aggregator binds.
        let admin_cfg = AdminConfig {
            listen: ac.admin,
            ..cfg.admin.clone().unwrap_or_default()
        };
        let access =
            AdminAccess::from_config(&admin_cfg).map_err(crate::admin::AdminError::from)?;
        // The fleet view keeps its own acknowledgements: only where `admin.acknowledgements`
        // says (it has no spool and no event file of its own).
        let acks = match &admin_cfg.acknowledgements {
            Some(p) => Arc::new(
                Acknowledgements::open(p)
                    .map_err(|e| crate::admin::AdminError::Io(std::io::Error::other(e)))?,
            ),
            None => Arc::new(Acknowledgements::in_memory()),
        };
        let stats = Arc::new(
            Stats::new(cfg.stats.clone(), cfg.grouping.max_endpoints).with_acknowledgements(acks),
        );
        log_admin(ac.admin, &admin_cfg);
        let stage = StageConfig::from_config(cfg);
        let reloads = Arc::new(ReloadCounters::default());
        let state = admin_state(stats, Arc::new(AtomicBool::new(false)), &cfg.gate, &stage)
            .with_access(access)
            .with_metrics_source(reloads.clone());
        let reloader = match reload {
            Some(src) => {
                // No pipeline and no proxy: only what the admin server reads is swapped.
                let slots = Slots {
                    pipeline: None,
                    mirror: None,
                    recorder: None,
                    gate: state.gate.clone(),
                    redaction: state.redaction.clone(),
                };
                Some(
                    Reloader::start(src, cfg.clone(), slots, reloads)
                        .map_err(crate::aggregate::AggregateError::Thread)?,
                )
            }
            None => None,
        };
        let run = crate::aggregate::run(ac, state, shutdown).await;
        if let Some(r) = reloader {
            let _ = tokio::task::spawn_blocking(move || r.stop()).await;
        }
        run
    }
}

/// The admin server's state: statistics, readiness and the gate's defaults from the config.
fn admin_state(
    stats: Arc<Stats>,
    ready: Arc<AtomicBool>,
    gate: &GateConfig,
    stage: &StageConfig,
) -> AdminState {
    let mut state = AdminState::new(stats, ready);
    state.gate = Arc::new(ArcSwap::from_pointee(gate.clone()));
    state.redaction = Arc::new(ArcSwap::from_pointee(Redaction::from_config(
        &stage.redact,
        stage.publish.max_body_bytes,
    )));
    state
}

/// The acknowledged signatures, from `admin.acknowledgements`, else beside the Kafka spool,
/// else beside the event file; kept in memory only when there is neither (`demo`).
fn acknowledgements(
    cfg: &Config,
    admin: &AdminConfig,
    default_file_sink: bool,
) -> Result<Arc<Acknowledgements>, AppError> {
    let file_sink = match &cfg.sinks.file {
        Some(f) => Some(f.path.clone()),
        None if cfg.sinks.kafka.is_none() && default_file_sink => {
            Some(crate::sink::file::FileSinkConfig::default().path)
        }
        None => None,
    };
    let path = admin
        .acknowledgements
        .clone()
        .or_else(|| match (&cfg.sinks.kafka, file_sink) {
            (Some(k), _) => Some(k.spool_dir.join("acknowledgements.json")),
            (None, Some(events)) => Some(
                events
                    .parent()
                    .unwrap_or(std::path::Path::new(""))
                    .join("shadowdiff-acknowledgements.json"),
            ),
            (None, None) => None,
        });
    match path {
        Some(p) => {
            let a = Acknowledgements::open(&p)?;
            tracing::info!(path = %p.display(), kept = a.list().len(), "acknowledged signatures");
            Ok(Arc::new(a))
        }
        None => {
            tracing::info!(
                "acknowledged signatures are kept in memory only (no spool, no event file, no admin.acknowledgements)"
            );
            Ok(Arc::new(Acknowledgements::in_memory()))
        }
    }
}

/// Where the admin server is and how it is guarded; never the token itself.
fn log_admin(addr: SocketAddr, c: &AdminConfig) {
    let hosts: Vec<String> = c.allowed_hosts.iter().map(|h| h.to_string()).collect();
    tracing::info!(
        admin = %addr,
        token = c.token_file.is_some(),
        allowed_hosts = ?hosts,
        "admin API, /metrics and review UI"
    );
}

async fn bind_admin(addr: SocketAddr, fallback: bool) -> Result<tokio::net::TcpListener, AppError> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if fallback => {
            tracing::info!(admin = %addr, error = %e, "admin address taken; using a free port");
            tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|source| AppError::AdminBind { addr, source })
        }
        Err(source) => Err(AppError::AdminBind { addr, source }),
    }
}

/// The sinks the config asks for, behind one [`Fanout`], and their `/metrics` sources.
pub struct Sinks {
    /// Everything behind one `Sink`.
    pub sink: Arc<dyn Sink>,
    /// Each sink's own counters, reported at scrape time.
    pub metrics: Vec<Arc<dyn MetricsSource>>,
}

impl Sinks {
    /// The sinks of `cfg.sinks`, after `extra` ones (the statistics). With none configured, the
    /// file sink with its defaults when `default_file` is set.
    pub fn build(
        cfg: &Config,
        extra: Vec<Arc<dyn Sink>>,
        default_file: bool,
    ) -> Result<Sinks, AppError> {
        let mut fan = Fanout::new(extra);
        let mut metrics: Vec<Arc<dyn MetricsSource>> = Vec::new();
        let file = match (&cfg.sinks.file, &cfg.sinks.kafka) {
            (Some(f), _) => Some(f.clone()),
            (None, None) if default_file => Some(crate::sink::file::FileSinkConfig::default()),
            (None, _) => None,
        };
        if let Some(f) = file {
            let s = FileSink::open(&f).map_err(|e| AppError::Sink {
                sink: "file",
                reason: e.to_string(),
            })?;
            tracing::info!(sink = "file", path = %f.path.display(), "events go to a JSONL file");
            metrics.push(s.counters());
            fan.push(Arc::new(s));
        }
        if let Some(k) = &cfg.sinks.kafka {
            // Interval statistics first: at shutdown its last interval goes out before the
            // events sink spends its share of the grace period.
            let mut sc = StatsPublisherConfig::new(k.clone(), cfg.instance_name());
            sc.max_endpoints = cfg.grouping.max_endpoints;
            let p = StatsPublisher::start(sc).map_err(|e| AppError::Sink {
                sink: "kafka_stats",
                reason: e.to_string(),
            })?;
            metrics.push(Arc::new(p.handle()));
            fan.push(Arc::new(p));
            let s = KafkaSink::start(k.clone()).map_err(|e| AppError::Sink {
                sink: "kafka",
                reason: e.to_string(),
            })?;
            tracing::info!(sink = "kafka", brokers = %k.brokers, topic = %k.topic, "events go to Kafka");
            metrics.push(Arc::new(s.stats_handle()));
            fan.push(Arc::new(s));
        }
        Ok(Sinks {
            sink: Arc::new(fan),
            metrics,
        })
    }
}
