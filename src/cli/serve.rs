//! The long-running commands, `proxy` and `aggregate`: the config file and the flags over it,
//! logging, a runtime, then the app's wiring ([`crate::app`]).

use super::{AggregateArgs, ProxyArgs, print_problems};
use crate::app::reload::ReloadSource;
use crate::app::{Aggregator, AppError, Settings, Sidecar};
use crate::config::{Config, ConfigErrors, LogFormat};
use anyhow::{Context, bail};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// Installs the `tracing` subscriber: `RUST_LOG` wins over the config's level.
pub(super) fn init_logging(cfg: &crate::config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: in a log file or a collector they are noise.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Human => b.try_init(),
    };
}

/// Reads `--config` (or the defaults); a bad file prints its problems and yields exit 64.
pub(super) fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        Some(p) => Config::load(p).map_err(|e| {
            print_problems(&e);
            ExitCode::from(64)
        }),
        None => Ok(Config::default()),
    }
}

pub(super) fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .context("cannot start the async runtime")
}

/// The proxy's config: the file (or the defaults) with the flags over it. A reload calls it
/// again, so the flags keep winning over the file.
fn proxy_config(args: &ProxyArgs) -> Result<Config, ConfigErrors> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(v) = args.listen {
        cfg.listen = v;
    }
    if let Some(v) = &args.primary {
        cfg.primary = Some(v.clone());
    }
    if let Some(v) = &args.candidate {
        cfg.candidate = Some(v.clone());
    }
    if let Some(v) = &args.secondary {
        cfg.secondary = Some(v.clone());
    }
    if let Some(v) = &args.rules {
        cfg.rules = Some(v.clone());
    }
    if let Some(v) = args.admin {
        set_admin_listen(&mut cfg, v);
    }
    Ok(cfg)
}

pub(super) fn proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let cfg = match proxy_config(&args) {
        Ok(c) => c,
        Err(e) => {
            print_problems(&e);
            return Ok(ExitCode::from(64));
        }
    };
    init_logging(&cfg.log);
    let mut settings = match Settings::load(cfg) {
        Ok(s) => s,
        Err(e) => {
            print_problems(&e);
            return Ok(ExitCode::from(64));
        }
    };
    let run = runtime("shadowdiff")?.block_on(async move {
        // Installed first thing inside the runtime: a SIGHUP during start-up must not kill.
        let (signals, hangups) = crate::app::signals();
        settings.reload = Some(ReloadSource {
            config_file: args.config.clone(),
            load: Box::new(move || proxy_config(&args)),
            hangups,
        });
        let sidecar = Sidecar::start(settings, signals).await?;
        sidecar.join().await
    });
    match run {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(AppError::Config(e)) => {
            print_problems(&e);
            Ok(ExitCode::from(64))
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn aggregate(args: AggregateArgs) -> anyhow::Result<ExitCode> {
    let mut file = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_logging(&file.log);
    let kafka = file.sinks.kafka.clone();
    let Some(brokers) = args
        .brokers
        .clone()
        .or_else(|| kafka.as_ref().map(|k| k.brokers.clone()))
    else {
        bail!("--brokers is required (or sinks.kafka.brokers in --config)");
    };
    let mut ac = crate::aggregate::AggregateConfig::new(brokers);
    if let Some(k) = &kafka {
        ac.topic = k.topic.clone();
        ac.stats_topic = k.stats_topic.clone();
        // Security settings (TLS, SASL) are shared; producer-only ones are ignored by librdkafka.
        ac.options = k.options.clone();
    }
    if let Some(t) = args.topic {
        ac.topic = t;
    }
    if let Some(t) = args.stats_topic {
        ac.stats_topic = t;
    }
    if let Some(g) = args.group {
        ac.group = g;
    }
    if let Some(v) = args.admin {
        set_admin_listen(&mut file, v);
    }
    if let Some(a) = &file.admin {
        ac.admin = a.listen;
    }
    // Fail on bad librdkafka settings before anything runs.
    let probe: Result<rdkafka::consumer::BaseConsumer, _> = ac.client_config().create();
    if let Err(e) = probe {
        bail!("kafka consumer configuration: {e}");
    }
    // SIGHUP reloads what the fleet view reads of the file: the gate's thresholds, `redact:`.
    let config_file = args.config.clone();
    let admin_flag = args.admin;
    let load = move || -> Result<Config, ConfigErrors> {
        let mut c = match &config_file {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(v) = admin_flag {
            set_admin_listen(&mut c, v);
        }
        Ok(c)
    };
    let run = runtime("shadowdiff-agg")?.block_on(async {
        // The signal handlers go in first thing inside the runtime (`app::signals`).
        let (signals, hangups) = crate::app::signals();
        let reload = ReloadSource {
            config_file: args.config.clone(),
            load: Box::new(load),
            hangups,
        };
        Aggregator::run(&file, ac, Some(reload), signals).await
    });
    match run {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(crate::aggregate::AggregateError::Admin(crate::admin::AdminError::Config(e))) => {
            print_problems(&e.into());
            Ok(ExitCode::from(64))
        }
        Err(e) => Err(e.into()),
    }
}

/// `--admin ADDR` replaces `admin.listen` and keeps the token and allowed hosts of the file.
fn set_admin_listen(cfg: &mut Config, addr: std::net::SocketAddr) {
    cfg.admin.get_or_insert_with(Default::default).listen = addr;
}
