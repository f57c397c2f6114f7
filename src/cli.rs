//! Command-line parsing and the subcommands. Arguments are parsed here once and turned into
//! built objects (rules, comparator) before any work starts; errors exit 2 (64 for
//! `check-config`, as DESIGN.md fixes).

use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions, Difference, Verdict, VerdictKind};
use crate::config::{Config, ConfigErrors, LogFormat, Upstream};
use crate::exchange::{self, Response};
use crate::pipeline::Sink;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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
        Command::Diff(args) => match run_diff(&args) {
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
        Command::Gate(args) => match run_gate(&args) {
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
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Human => b.try_init(),
    };
}

/// The sinks a proxy publishes to, and the handles `/metrics` needs.
pub struct BuiltSinks {
    /// Everything behind one `Sink`: pass it to [`crate::ingest::proxy::start`].
    pub sink: Arc<dyn Sink>,
    /// The file sink's counters (`shadowdiff_sink_events_total{sink="file",outcome=...}`).
    pub file: Option<Arc<crate::sink::file::FileSinkCounters>>,
    /// The Kafka sink's counters, when configured.
    pub kafka: Option<crate::sink::kafka::KafkaStatsHandle>,
    /// The interval statistics publisher's counters, when Kafka is configured.
    pub kafka_stats: Option<crate::sink::kafka_stats::StatsPublisherHandle>,
}

/// The sinks the config asks for, plus `extra` ones (the statistics sink, say). With no sink
/// configured, the file sink with its defaults.
pub fn build_sinks(cfg: &Config, extra: Vec<Arc<dyn Sink>>) -> anyhow::Result<BuiltSinks> {
    let mut fan = crate::pipeline::Fanout::new(extra);
    let file = match (&cfg.sinks.file, &cfg.sinks.kafka) {
        (Some(f), _) => Some(f.clone()),
        (None, None) => Some(crate::config::FileSinkConfig::default()),
        (None, Some(_)) => None,
    };
    let mut file_counters = None;
    if let Some(f) = file {
        let s = crate::sink::file::FileSink::open(&f)?;
        tracing::info!(sink = "file", path = %f.path.display(), "events go to a JSONL file");
        file_counters = Some(s.counters());
        fan.push(Arc::new(s));
    }
    let mut kafka = None;
    let mut kafka_stats = None;
    if let Some(k) = &cfg.sinks.kafka {
        let kc = crate::sink::kafka::KafkaConfig {
            brokers: k.brokers.clone(),
            topic: k.topic.clone(),
            stats_topic: k.stats_topic.clone(),
            spool_dir: k.spool_dir.clone(),
            options: k.options.clone(),
            ..Default::default()
        };
        // Interval statistics first: at shutdown its last interval goes out before the events
        // sink spends its share of the grace period.
        let mut sc =
            crate::sink::kafka_stats::StatsPublisherConfig::new(kc.clone(), cfg.instance_name());
        sc.interval = k.stats_interval;
        let p = crate::sink::kafka_stats::StatsPublisher::start(sc)
            .context("cannot start the Kafka statistics publisher")?;
        kafka_stats = Some(p.handle());
        fan.push(Arc::new(p));
        let s = crate::sink::kafka::KafkaSink::start(kc).context("cannot start the Kafka sink")?;
        tracing::info!(sink = "kafka", brokers = %k.brokers, topic = %k.topic, "events go to Kafka");
        kafka = Some(s.stats_handle());
        fan.push(Arc::new(s));
    }
    Ok(BuiltSinks {
        sink: Arc::new(fan),
        file: file_counters,
        kafka,
        kafka_stats,
    })
}

/// `shadowdiff_sink_events_total{sink="kafka_stats",outcome}`: the interval statistics messages.
fn kafka_stats_metrics(
    h: crate::sink::kafka_stats::StatsPublisherHandle,
) -> Arc<dyn crate::admin::MetricsSource> {
    use crate::admin::{MetricFamily, SINK_EVENTS_TOTAL};
    Arc::new(move || {
        let mut m = MetricFamily::counter(SINK_EVENTS_TOTAL, "Events per sink and outcome");
        for (outcome, n) in h.snapshot().outcomes() {
            m = m.with(&[("sink", "kafka_stats"), ("outcome", outcome)], n as f64);
        }
        vec![m]
    })
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                    _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutdown requested"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                print_problems(&e);
                return Ok(ExitCode::from(64));
            }
        },
        None => Config::default(),
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
        cfg.admin = Some(v);
    }
    init_logging(&cfg.log);
    let rules = match cfg.load_rules() {
        Ok(r) => r,
        Err(e) => {
            print_problems(&e);
            return Ok(ExitCode::from(64));
        }
    };
    // The statistics sink joins the fan-out so the admin server can read what it counts.
    let stats = Arc::new(crate::stats::Stats::new(
        cfg.stats.clone(),
        cfg.grouping.max_endpoints,
    ));
    let sinks = build_sinks(&cfg, vec![stats.clone() as Arc<dyn Sink>])?;
    let admin = cfg
        .admin
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 9901)));
    let gate = cfg.gate.clone();
    let pc = match cfg.into_proxy(rules) {
        Ok(pc) => pc,
        Err(e) => {
            print_problems(&e);
            return Ok(ExitCode::from(64));
        }
    };
    let noise = pc.file.secondary.is_some().then(|| pc.noise.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shadowdiff")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let handle = crate::ingest::proxy::start(pc, sinks.sink, shutdown_signal()).await?;
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = admin_state(
            stats,
            ready.clone(),
            &gate,
            handle.counters(),
            sinks.file.clone(),
            sinks.kafka.clone(),
        );
        let mut state = state;
        state.noise = noise;
        if let Some(h) = sinks.kafka_stats.clone() {
            state = state.with_metrics_source(kafka_stats_metrics(h));
        }
        let listener = tokio::net::TcpListener::bind(admin)
            .await
            .with_context(|| format!("cannot bind the admin address {admin}"))?;
        tracing::info!(admin = %admin, "admin API, /metrics and review UI");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::admin::serve(listener, state, async move {
            let _ = stop_rx.await;
        }));
        ready.store(true, std::sync::atomic::Ordering::Release);
        handle.join().await?;
        let _ = stop_tx.send(());
        let _ = server.await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_aggregate(args: AggregateArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                print_problems(&e);
                return Ok(ExitCode::from(64));
            }
        },
        None => Config::default(),
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
    if let Some(a) = args.admin.or(file.admin) {
        ac.admin = a;
    }
    // Fail on bad librdkafka settings before anything runs.
    let probe: Result<rdkafka::consumer::BaseConsumer, _> = ac.client_config().create();
    if let Err(e) = probe {
        bail!("kafka consumer configuration: {e}");
    }
    let stats = Arc::new(crate::stats::Stats::new(
        file.stats.clone(),
        file.grouping.max_endpoints,
    ));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut state = crate::admin::AdminState::new(stats, ready);
    state.gate_max_divergence = file.gate.max_divergence;
    state.gate_min_samples = file.gate.min_samples;
    state.gate_thresholds = file
        .gate
        .endpoints
        .iter()
        .filter_map(|(e, t)| t.max_divergence.map(|m| (e.clone(), m)))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shadowdiff-agg")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(crate::aggregate::run(ac, state, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Loads rules from a path, or an empty rule set.
pub fn load_rules(path: Option<&Path>) -> anyhow::Result<RuleSet> {
    match path {
        None => Ok(RuleSet::default()),
        Some(p) => {
            if !p.exists() {
                bail!("rules path {} does not exist", p.display());
            }
            RuleSet::load(p).map_err(|e| anyhow::anyhow!("{e}"))
        }
    }
}

fn run_diff(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let rules = load_rules(args.rules.as_deref())?;
    if let Some(e) = &args.endpoint {
        crate::compare::pattern::EndpointPattern::parse(e)
            .map_err(|err| anyhow::anyhow!("--endpoint: {err}"))?;
    }
    let cmp = Comparator::new(Arc::new(rules), CompareOptions::default());
    let left = std::fs::read(&args.left)
        .with_context(|| format!("cannot read {}", args.left.display()))?;
    let right = std::fs::read(&args.right)
        .with_context(|| format!("cannot read {}", args.right.display()))?;
    let verdict = match (parse_http_response(&left)?, parse_http_response(&right)?) {
        (Some(p), Some(c)) => {
            let (method, path) = args
                .endpoint
                .as_deref()
                .and_then(|e| e.split_once(' '))
                .unwrap_or(("GET", "/"));
            let req = exchange::Request {
                method: method.to_string(),
                path: path.trim().to_string(),
                ..Default::default()
            };
            cmp.compare_responses(&req, args.endpoint.as_deref(), &p, &c)
        }
        (None, None) => cmp.compare_bodies(args.endpoint.as_deref(), &left, &right, None, None),
        _ => bail!(
            "one side is a raw HTTP response and the other a bare body; give two of the same form"
        ),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = JsonOutput {
            verdict: verdict.kind,
            differences: &verdict.differences,
            signature: verdict.signature.as_deref(),
            notes: &verdict.notes,
            truncated: verdict.truncated,
        };
        let doc = serde_json::to_string(&doc)?;
        writeln!(out, "{doc}")?;
    } else {
        let color = match args.color.as_str() {
            "always" => true,
            "never" => false,
            _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        write!(out, "{}", render_human(&verdict, color))?;
    }
    Ok(match verdict.kind {
        VerdictKind::Match => ExitCode::SUCCESS,
        VerdictKind::Skipped => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

/// `diff --json` output. A struct rather than `json!`: serde_json (without `preserve_order`)
/// sorts map keys, and DESIGN.md shows `verdict` first, then `differences`.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    verdict: VerdictKind,
    differences: &'a [Difference],
    signature: Option<&'a str>,
    notes: &'a [String],
    truncated: bool,
}

/// A raw HTTP/1.x response (status line, headers, body), or `None` if the bytes are a bare body.
fn parse_http_response(bytes: &[u8]) -> anyhow::Result<Option<Response>> {
    if !bytes.starts_with(b"HTTP/1.") {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp
        .parse(bytes)
        .context("not a valid HTTP response head")?
    {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => bail!("HTTP response head is incomplete"),
    };
    let mut map = http::HeaderMap::new();
    for h in resp.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).context("bad header name")?;
        map.append(
            name,
            http::HeaderValue::from_bytes(h.value).context("bad header value")?,
        );
    }
    Ok(Some(Response {
        status: resp.code.unwrap_or(0),
        headers: map,
        body: bytes::Bytes::copy_from_slice(&bytes[n..]),
        latency: Default::default(),
    }))
}

/// The human listing: verdict line, then one line per difference, colour optional.
pub fn render_human(v: &Verdict, color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut s = String::new();
    let head = match v.kind {
        VerdictKind::Match => paint("32;1", "match"),
        VerdictKind::Skipped => paint(
            "33;1",
            &format!(
                "skipped ({})",
                v.skip_reason.map(|r| r.as_str()).unwrap_or("?")
            ),
        ),
        k => paint("31;1", k.as_str()),
    };
    s.push_str(&head);
    if !v.differences.is_empty() {
        s.push_str(&format!(": {} difference(s)", v.differences.len()));
        if let Some(sig) = &v.signature {
            s.push_str(&format!(", signature {sig}"));
        }
    }
    s.push('\n');
    for d in &v.differences {
        s.push_str(&render_difference(d, &paint));
    }
    if v.truncated {
        s.push_str("  … more differences not shown\n");
    }
    for n in &v.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

fn render_difference(d: &Difference, paint: &dyn Fn(&str, &str) -> String) -> String {
    let path = if d.path.is_empty() {
        "(root)"
    } else {
        d.path.as_str()
    };
    let kind = paint("36", &format!("{:<8}", d.kind.as_str()));
    if let Some(detail) = d
        .detail
        .as_deref()
        .filter(|_| d.kind == crate::compare::DiffKind::Body)
    {
        let body: String = detail
            .lines()
            .map(|l| match l.chars().next() {
                Some('-') => format!("    {}\n", paint("31", l)),
                Some('+') => format!("    {}\n", paint("32", l)),
                _ => format!("    {l}\n"),
            })
            .collect();
        return format!("  {kind} {path}\n{body}");
    }
    format!(
        "  {kind} {path}: {} → {}\n",
        paint("31", &compact(&d.primary)),
        paint("32", &compact(&d.candidate))
    )
}

fn compact(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

fn run_gate(args: &GateArgs) -> anyhow::Result<ExitCode> {
    use crate::admin::client::{GateQuery, fetch_gate};
    let q = GateQuery {
        max_divergence: args.max_divergence.clone(),
        min_samples: args.min_samples,
        endpoint: args.endpoint.clone(),
        window: args.window.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt.block_on(fetch_gate(&args.url, &q, args.timeout))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{}", render_gate(&report))?;
    }
    Ok(ExitCode::from(report.verdict.exit_code()))
}

/// The gate report as a table: one line per endpoint, then the pool and the verdict.
pub fn render_gate(r: &crate::stats::GateReport) -> String {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.3}%", v * 100.0));
    let ci = |c: [f64; 2]| format!("[{:.3}%, {:.3}%]", c[0] * 100.0, c[1] * 100.0);
    let width = r
        .endpoints
        .iter()
        .map(|e| e.endpoint.chars().count())
        .chain([8])
        .max()
        .unwrap_or(8);
    let mut s = format!(
        "{:<width$}  {:>9}  {:>9}  {:>20}  {:>9}  verdict\n",
        "endpoint", "samples", "rate", "ci95", "threshold"
    );
    let mut row = |name: &str, n: u64, rate: Option<f64>, c: [f64; 2], t: f64, v: &str| {
        s.push_str(&format!(
            "{name:<width$}  {n:>9}  {:>9}  {:>20}  {:>9}  {v}\n",
            pct(rate),
            ci(c),
            pct(Some(t))
        ));
    };
    for e in &r.endpoints {
        row(
            &e.endpoint,
            e.samples,
            e.divergence_rate,
            e.ci95,
            e.max_divergence,
            e.verdict.as_str(),
        );
    }
    row(
        "(all)",
        r.samples,
        r.divergence_rate,
        r.ci95,
        r.max_divergence,
        r.pool_verdict.as_str(),
    );
    s.push_str(&format!(
        "\ngate: {} (window {}, min samples {})\n",
        r.verdict.as_str(),
        r.window,
        r.min_samples
    ));
    s
}

/// The admin server's state: statistics, gate thresholds from the config, and the proxy's and
/// sinks' own counters as `/metrics` sources (read from atomics at each scrape).
pub fn admin_state(
    stats: Arc<crate::stats::Stats>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    gate: &crate::config::GateConfig,
    counters: Arc<crate::ingest::Counters>,
    file: Option<Arc<crate::sink::file::FileSinkCounters>>,
    kafka: Option<crate::sink::kafka::KafkaStatsHandle>,
) -> crate::admin::AdminState {
    use crate::admin::{MetricFamily, SHADOW_IN_FLIGHT, SINK_EVENTS_TOTAL};
    use std::sync::atomic::Ordering::Relaxed;
    let mut state =
        crate::admin::AdminState::new(stats, ready).with_metrics_source(Arc::new(move || {
            let mut out = vec![MetricFamily::gauge(
                SHADOW_IN_FLIGHT,
                "Shadow requests in flight",
                counters.shadows_in_flight.load(Relaxed) as f64,
            )];
            out.push(MetricFamily::gauge(
                "shadowdiff_shadow_admit_ratio",
                "Fraction of eligible requests shadowed now: below 1 while the I/O threads are saturated (shadow.overload)",
                counters.overload.admit_ratio(),
            ));
            out.push(MetricFamily::gauge(
                "shadowdiff_io_busy_ratio",
                "Busy share of the proxy's I/O threads over the last 100 ms, of the cores the process may use",
                counters.overload.busy_ratio(),
            ));
            out.push(MetricFamily::gauge(
                "shadowdiff_shadow_buffered_bytes",
                "Bytes held by shadows (copies and answers awaiting comparison), against shadow.max_buffered_bytes",
                counters.buffered.used() as f64,
            ));
            let mut sink = MetricFamily::counter(SINK_EVENTS_TOTAL, "Events per sink and outcome");
            if let Some(f) = &file {
                for (outcome, n) in f.snapshot() {
                    sink = sink.with(&[("sink", "file"), ("outcome", outcome)], n as f64);
                }
            }
            if let Some(k) = &kafka {
                let snap = k.snapshot();
                for (outcome, n) in snap.outcomes() {
                    sink = sink.with(&[("sink", "kafka"), ("outcome", outcome)], n as f64);
                }
                out.push(MetricFamily::gauge(
                    "shadowdiff_spool_events",
                    "Events waiting in the Kafka spool",
                    snap.spool_events as f64,
                ));
                out.push(
                    MetricFamily::counter(
                        "shadowdiff_kafka_producer_restarts_total",
                        "Kafka producers replaced after a fatal error or a stall while connected",
                    )
                    .with(&[], snap.producer_restarts as f64),
                );
            }
            out.push(sink);
            out
        }));
    state.gate_max_divergence = gate.max_divergence;
    state.gate_min_samples = gate.min_samples;
    state.gate_thresholds = gate
        .endpoints
        .iter()
        .filter_map(|(e, t)| t.max_divergence.map(|m| (e.clone(), m)))
        .collect();
    state
}
