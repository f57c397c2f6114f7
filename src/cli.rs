//! Command-line parsing and the subcommands. Arguments are parsed here once and turned into
//! built objects (rules, comparator) before any work starts; errors exit 2 (64 for
//! `check-config`, as DESIGN.md fixes).

mod capture;
mod check;
mod diff;
mod gate;
mod replay;
mod serve;

pub use diff::render_human;
pub use gate::render_gate;

use crate::compare::rules::RuleSet;
use crate::config::{ConfigErrors, Upstream};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
    /// Replays a recording (shadowdiff.recording.v1) against live targets: each recorded
    /// request goes to the candidate (and secondary) under the shadow policy and is compared
    /// with the recorded primary answer, or with a live --primary's (a double run). Exit 0 when
    /// it ran; with --max-divergence, the gate's exit code (0 pass, 1 fail, 3 insufficient
    /// data); 2 on error.
    Replay(Box<ReplayArgs>),
    /// Passive: reassembles the HTTP/1.x exchanges of server port N from packets (a live
    /// interface or a pcap/pcapng file) and reports how complete the capture is; with
    /// --candidate, compares each captured answer with the candidate's; with --record, writes
    /// each exchange as a recording.
    Capture(Box<CaptureArgs>),
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
    #[arg(long, value_parser = brokers_arg)]
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

#[derive(clap::Args, Debug, Default, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["interface", "pcap"])))]
pub struct CaptureArgs {
    /// Capture live on this interface (`lo`, `eth0`, `any`); needs root or CAP_NET_RAW.
    #[arg(long)]
    pub interface: Option<String>,
    /// Read a pcap or pcapng file (`.gz` too).
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// The server port whose exchanges are reassembled.
    #[arg(long)]
    pub port: u16,
    /// Send each captured request to this candidate and compare with the captured answer.
    #[arg(long)]
    pub candidate: Option<Upstream>,
    /// A second legacy instance, for noise cancellation.
    #[arg(long)]
    pub secondary: Option<Upstream>,
    /// Write every reassembled exchange as a recording (`shadowdiff.recording.v1`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Config file (shadow policy, limits, admin, stats).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Admin API / `/metrics` address (default for a live capture: 127.0.0.1:9901).
    #[arg(long)]
    pub admin: Option<std::net::SocketAddr>,
    /// Write the summary JSON (with the completeness counts) to this file at the end.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Default, Clone)]
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

#[derive(clap::Args, Debug, Default)]
pub struct ReplayArgs {
    /// The recording to replay (JSONL, shadowdiff.recording.v1).
    #[arg(long)]
    pub traffic: PathBuf,
    /// Server port of the exchanges in a pcap/pcapng file (pcap input only).
    #[arg(long)]
    pub port: Option<u16>,
    /// The build under test, http://host:port (required here or in --config).
    #[arg(long)]
    pub candidate: Option<Upstream>,
    /// A live primary: each request goes to it too and its answer is the reference (a double
    /// run). Without it, the recorded answers are.
    #[arg(long)]
    pub primary: Option<Upstream>,
    /// A second legacy instance, for noise cancellation.
    #[arg(long)]
    pub secondary: Option<Upstream>,
    /// Requests per second at most (default: as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Config file: rules, shadow policy (methods, routes, headers, timeout, breaker), compare,
    /// redact, sinks, gate defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write /api/v1/summary's JSON over what was replayed to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Gate over what was replayed: highest acceptable divergence rate, 0.01 or 1%.
    #[arg(long, value_parser = parse_rate_arg)]
    pub max_divergence: Option<String>,
    /// With --max-divergence: fewer compared exchanges is insufficient data (exit 3; default:
    /// the config's gate.min_samples, 500).
    #[arg(long)]
    pub min_samples: Option<u64>,
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
    /// Which verdicts --min-samples holds back: "both" (the server's default) or "pass" (a
    /// clearly bad candidate fails before --min-samples).
    #[arg(long, value_parser = ["pass", "both"])]
    pub min_samples_for: Option<String>,
    /// "sequential" (default: anytime-valid, safe to poll again and again) or "wilson"
    /// (fixed-sample interval, valid for one look only). See docs/gate.md.
    #[arg(long, value_parser = ["sequential", "wilson"])]
    pub method: Option<String>,
    /// Gate one endpoint only, e.g. "GET /orders/{id}".
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Window: 15m, 1h, ... or "all" (default: all, since the sidecar started — the sample the
    /// sequential gate's guarantee holds over).
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
    /// Serve one sample service only (legacy or candidate) on --listen, until Ctrl-C: what the
    /// replay example (scripts/replay-example.sh) replays against.
    #[arg(long, value_parser = ["legacy", "candidate"], requires = "listen")]
    pub service: Option<String>,
    /// With --service: the address to serve it on.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Primary side: a body file, or a raw HTTP response (starting `HTTP/1.x`, as `curl -i` saves it).
    pub left: PathBuf,
    /// Candidate side, same forms as LEFT.
    pub right: PathBuf,
    /// Rules file or folder; without it, the config's rules (with --config), else no
    /// normalisation beyond the built-in semantics.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Config file (`shadowdiff.yaml`): its `redact:` and `publish:` sections redact the output
    /// as the sidecar redacts events (without it, the default redaction), and its `rules:` apply
    /// unless --rules is given.
    #[arg(long)]
    pub config: Option<PathBuf>,
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
            let service = args.service.as_deref().zip(args.listen).map(|(s, a)| {
                let b = if s == "candidate" {
                    crate::demo::services::Build::Candidate
                } else {
                    crate::demo::services::Build::Legacy
                };
                (b, a)
            });
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
            let run = async move {
                match service {
                    Some((b, a)) => crate::demo::serve_one(b, a).await,
                    None => crate::demo::run(opts).await,
                }
            };
            match rt.block_on(run) {
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
        Command::CheckConfig { file } => check::run(&file),
        Command::Proxy(args) => match serve::proxy(*args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff proxy: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Capture(args) => match capture::run(*args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff capture: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Aggregate(args) => match serve::aggregate(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff aggregate: error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Replay(args) => match replay::run(*args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff replay: error: {e:#}");
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

/// Every problem of a config, one a line, then the count (stderr).
fn print_problems(e: &ConfigErrors) {
    for p in &e.0 {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s)", e.0.len());
}

/// `--brokers`, checked as `sinks.kafka.brokers` is.
fn brokers_arg(s: &str) -> Result<String, String> {
    crate::units::de::check_brokers(s).map(|()| s.to_string())
}
