//! Command-line parsing and the subcommands. Arguments are parsed here once and turned into
//! built objects (rules, comparator) before any work starts; errors exit 2 (64 for
//! `check-config`, as DESIGN.md fixes).

mod check;
mod diff;
mod gate;
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
        Command::CheckConfig { file } => check::run(&file),
        Command::Proxy(args) => match serve::proxy(*args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("shadowdiff proxy: error: {e:#}");
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
