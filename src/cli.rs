//! Command-line parsing and the subcommands. Arguments are parsed here once and turned into
//! built objects (rules, comparator) before any work starts; errors exit 2 (64 for
//! `check-config`, as DESIGN.md fixes).

mod diff;
mod gate;

pub use diff::render_human;
pub use gate::render_gate;

use crate::app::{Aggregator, AppError, Settings, Sidecar};
use crate::compare::rules::RuleSet;
use crate::config::{Config, ConfigErrors, LogFormat, Upstream};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "shadowdiff",
    version,
    about = "Shadow-traffic comparator: mirror live requests to a candidate and diff the answers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compare two bodies (or two recorded HTTP responses); exit 0 equal, 1 different, 2 error.
    Diff(DiffArgs),
    /// Self-contained demo: sample legacy and candidate services, the sidecar in front, the
    /// recorded sample traffic driven through it; prints the summary, signatures and gate.
    Demo(DemoArgs),
    /// Validate rules (a file or a folder of *.yaml); reports every problem, exit 0 or 64.
    CheckRules {
        /// Rules file or folder.
        path: PathBuf,
    },
    /// Inline sidecar: forward to the primary, mirror to the candidate, compare off the request
    /// path. Flags override the config file.
    Proxy(Box<ProxyArgs>),
    /// Validate a config file and its rules; reports every problem at once, exit 0 or 64.
    CheckConfig {
        /// Config file (`shadowdiff.yaml`).
        file: PathBuf,
    },
    /// Release gate: asks a running sidecar's admin API whether the candidate's divergence rate
    /// is below a threshold; exit 0 pass, 1 fail, 3 insufficient data, 2 error.
    Gate(GateArgs),
    /// Fleet view: consumes every sidecar's events and interval statistics from Kafka (as a
    /// consumer group) and serves the same admin API and UI over the merged figures.
    Aggregate(AggregateArgs),
}

#[derive(clap::Args, Debug, Default)]
pub struct AggregateArgs {
    /// Config file: `sinks.kafka` (brokers, topics, options), `stats`, `gate`, `log` and `admin`
    /// are read from it; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Bootstrap brokers, host:port[,host:port] (required here or in the config file).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Events topic (default shadowdiff.events).
    #[arg(long)]
    pub topic: Option<String>,
    /// Statistics topic (default shadowdiff.stats).
    #[arg(long)]
    pub stats_topic: Option<String>,
    /// Consumer group (default shadowdiff-aggregate). Replicas that must each see the whole
    /// fleet need different groups; members of one group split the partitions.
    #[arg(long)]
    pub group: Option<String>,
    /// Admin API / UI address (default 127.0.0.1:9901).
    #[arg(long)]
    pub admin: Option<std::net::SocketAddr>,
}

#[derive(clap::Args, Debug, Default)]
pub struct ProxyArgs {
    /// Config file; without it, --primary and --candidate suffice.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// The legacy service, http://host:port.
    #[arg(long)]
    pub primary: Option<Upstream>,
    /// The new system receiving shadow copies, http://host:port.
    #[arg(long)]
    pub candidate: Option<Upstream>,
    /// A second legacy instance, for noise cancellation.
    #[arg(long)]
    pub secondary: Option<Upstream>,
    /// Rules file or folder (default diff-rules/ when it exists).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Admin API address (default 127.0.0.1:9901).
    #[arg(long)]
    pub admin: Option<std::net::SocketAddr>,
}

#[derive(clap::Args, Debug)]
pub struct GateArgs {
    /// Admin API base URL, e.g. http://127.0.0.1:9901.
    #[arg(long)]
    pub url: String,
    /// Highest acceptable divergence rate: 0.01 or 1% (default: the server's, 0.01).
    #[arg(long, value_parser = parse_rate_arg)]
    pub max_divergence: Option<String>,
    /// Fewer compared exchanges than this is insufficient data (default: the server's, 500).
    #[arg(long)]
    pub min_samples: Option<u64>,
    /// Gate one endpoint only, e.g. "GET /orders/{id}".
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Window: 15m, 1h, ... or "all" (default: the server's window).
    #[arg(long, value_parser = parse_window_arg)]
    pub window: Option<String>,
    /// Print the server's JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Give up after this long.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration)]
    pub timeout: std::time::Duration,
    /// A file holding the admin API's bearer token (the server's `admin.token_file`). Without
    /// it, the token is read from the SHADOWDIFF_ADMIN_TOKEN environment variable, if set; it is
    /// never given on the command line, where `ps` would show it.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

fn parse_rate_arg(s: &str) -> Result<String, String> {
    crate::units::parse_rate(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_window_arg(s: &str) -> Result<String, String> {
    crate::stats::Window::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Stop after the run instead of serving the admin API and UI until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Run without a secondary legacy instance (no noise cancellation).
    #[arg(long)]
    pub no_secondary: bool,
    /// Admin API / UI address (a free port is used if it is taken).
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: std::net::SocketAddr,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Primary side: a body file, or a raw HTTP response (starting `HTTP/1.x`, as `curl -i` saves it).
    pub left: PathBuf,
    /// Candidate side, same forms as LEFT.
    pub right: PathBuf,
    /// Rules file or folder; without it, no normalisation beyond the built-in semantics.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Endpoint whose scoped rules apply, e.g. "GET /orders/{id}"; without it only `"*"` rules apply.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Print `{"verdict": ..., "differences": [...]}` instead of the human listing.
    #[arg(long)]
    pub json: bool,
    /// Colour: auto (on a terminal), always or never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => {
            let opts = crate::demo::DemoOptions {
                exit: args.exit,
                secondary: !args.no_secondary,
                admin: args.admin,
                concurrency: args.concurrency,
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("shadowdiff demo: error: {e}");
                    return ExitCode::from(2);
                }
            };
            match rt.block_on(crate::demo::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shadowdiff demo: error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Diff(args) => match diff::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff diff: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::CheckRules { path } => match RuleSet::load(&path) {
            Ok(set) => {
                println!(
                    "{}: {} rule(s), {} endpoint template(s): ok",
                    path.display(),
                    set.rules.len(),
                    set.endpoints.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(64)
            }
        },
        Command::CheckConfig { file } => check_config(&file),
        Command::Proxy(args) => match run_proxy(*args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff proxy: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Aggregate(args) => match run_aggregate(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff aggregate: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Gate(args) => match gate::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff gate: error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn print_problems(e: &ConfigErrors) {
    for p in &e.0 {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s)", e.0.len());
}

fn check_config(file: &Path) -> ExitCode {
    match Config::check_file(file) {
        Ok((cfg, rules)) => {
            let show = |u: &Option<Upstream>| {
                u.as_ref()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "(not set: give --primary/--candidate)".into())
            };
            println!("{}: ok", file.display());
            println!("  listen     {}", cfg.listen);
            println!("  primary    {}", show(&cfg.primary));
            println!("  candidate  {}", show(&cfg.candidate));
            if let Some(s) = &cfg.secondary {
                println!("  secondary  {s}");
            }
            println!(
                "  rules      {} rule(s), {} endpoint template(s){}",
                rules.rules.len(),
                rules.endpoints.len(),
                cfg.rules_path()
                    .map(|p| format!(" from {}", p.display()))
                    .unwrap_or_default()
            );
            println!(
                "  shadow     methods {:?}, {} route(s), sample {}, timeout {:?}, max_in_flight {}",
                cfg.shadow
                    .methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>(),
                cfg.shadow.routes.len(),
                cfg.shadow.sample,
                cfg.shadow.timeout,
                cfg.shadow.max_in_flight
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_problems(&e);
            ExitCode::from(64)
        }
    }
}

/// Installs the `tracing` subscriber: `RUST_LOG` wins over the config's level.
fn init_logging(cfg: &crate::config::LogConfig) {
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
fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        Some(p) => Config::load(p).map_err(|e| {
            print_problems(&e);
            ExitCode::from(64)
        }),
        None => Ok(Config::default()),
    }
}

fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .context("cannot start the async runtime")
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(v) = args.listen {
        cfg.listen = v;
    }
    if let Some(v) = args.primary {
        cfg.primary = Some(v);
    }
    if let Some(v) = args.candidate {
        cfg.candidate = Some(v);
    }
    if let Some(v) = args.secondary {
        cfg.secondary = Some(v);
    }
    if let Some(v) = args.rules {
        cfg.rules = Some(v);
    }
    if let Some(v) = args.admin {
        set_admin_listen(&mut cfg, v);
    }
    init_logging(&cfg.log);
    let settings = match Settings::load(cfg) {
        Ok(s) => s,
        Err(e) => {
            print_problems(&e);
            return Ok(ExitCode::from(64));
        }
    };
    let run = runtime("shadowdiff")?.block_on(async move {
        let sidecar = Sidecar::start(settings, crate::app::shutdown_signal()).await?;
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

fn run_aggregate(args: AggregateArgs) -> anyhow::Result<ExitCode> {
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
    let run = runtime("shadowdiff-agg")?.block_on(Aggregator::run(
        &file,
        ac,
        crate::app::shutdown_signal(),
    ));
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
