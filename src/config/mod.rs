//! `shadowdiff.yaml` (DESIGN.md, "Config file"): the file form ([`Config`]), its validation
//! (every problem at once, each with file, line and reason) and the built form the proxy runs
//! with ([`ProxyConfig`]).
//!
//! How validation reports everything at once: the text is parsed to a YAML value first (a syntax
//! error carries its line); then every key of every section is deserialised on its own into the
//! section's struct (`deny_unknown_fields`), so one bad value cannot hide the next; values are
//! checked inside their deserialisers (units, URLs, methods, header names, patterns); finally
//! the rules the config points at are loaded and their problems added. Lines are found by
//! scanning the text ([`crate::yaml_lines::LineIndex`]).

pub(crate) mod de;
#[cfg(test)]
mod tests;

use crate::admin::config::{AdminConfig, AdminConfigError};
use crate::compare::pattern::EndpointPattern;
use crate::compare::rules::RuleSet;
use crate::sink::kafka::KafkaConfig;
use crate::yaml_lines::LineIndex;
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as Yaml};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use de::Upstream;

/// One problem in a config file (or in the rules it points at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: PathBuf,
    /// 1-based line, when it could be located.
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every problem found; a config with any problem is refused as a whole.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in configuration:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

/// The admin settings as they stand at start (after `--admin`), with no file line to point at.
impl From<AdminConfigError> for ConfigErrors {
    fn from(e: AdminConfigError) -> Self {
        ConfigErrors(vec![ConfigProblem {
            file: PathBuf::from("<config>"),
            line: None,
            reason: e.to_string(),
        }])
    }
}

/// The whole file. Every field is optional; defaults are given per field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the proxy listens on. Default `127.0.0.1:8080` (loopback: exposing the sidecar is
    /// a deliberate choice, write `0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// The legacy service whose answers clients get, `http://host:port`. Required (here or
    /// `--primary`).
    pub primary: Option<Upstream>,
    /// The new system that receives shadow copies, `http://host:port`. Required (here or
    /// `--candidate`).
    pub candidate: Option<Upstream>,
    /// A second legacy instance, for noise cancellation. Default none.
    pub secondary: Option<Upstream>,
    /// Admin API, metrics and UI: an address, or `{listen, token_file, allowed_hosts}`
    /// ([`AdminConfig`]: every key and its default). Default `127.0.0.1:9901`, no token.
    #[serde(deserialize_with = "crate::admin::config::deserialize_admin")]
    pub admin: Option<AdminConfig>,
    /// Rules file or folder of `*.yaml`, relative to this file's folder. Default `diff-rules/`
    /// when that folder exists, else no rules.
    pub rules: Option<PathBuf>,
    /// Name of this sidecar in published events. Default the host name (`HOSTNAME`), else
    /// `shadowdiff`.
    pub instance: Option<String>,
    pub shadow: ShadowConfig,
    pub compare: CompareConfig,
    pub grouping: GroupingConfig,
    pub publish: PublishConfig,
    pub sinks: SinksConfig,
    pub redact: RedactConfig,
    /// How long shutdown waits for in-flight requests, shadows and sinks. Default `10s`.
    #[serde(deserialize_with = "de::duration")]
    pub shutdown_grace: Duration,
    pub log: LogConfig,
    pub stats: StatsConfig,
    pub gate: crate::stats::GateConfig,
    pub noise: NoiseSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            primary: None,
            candidate: None,
            secondary: None,
            admin: Some(AdminConfig::default()),
            rules: None,
            instance: None,
            shadow: ShadowConfig::default(),
            compare: CompareConfig::default(),
            grouping: GroupingConfig::default(),
            publish: PublishConfig::default(),
            sinks: SinksConfig::default(),
            redact: RedactConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            log: LogConfig::default(),
            stats: StatsConfig::default(),
            gate: crate::stats::GateConfig::default(),
            noise: NoiseSection::default(),
        }
    }
}

/// `shadow:` — what is mirrored to the candidate (and secondary), and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// Methods mirrored on every route. Default `[GET, HEAD, OPTIONS]`: unsafe methods are never
    /// mirrored unless listed here or opted in per route.
    #[serde(deserialize_with = "de::methods")]
    pub methods: Vec<Method>,
    /// Per-route opt-in (or opt-out): `[{match: "POST /search", mirror: true}]`. The first
    /// matching route decides; otherwise `methods` does. Default none.
    pub routes: Vec<RouteConfig>,
    /// Fraction of eligible requests mirrored, `0.25` or `25%`. Default `1.0`.
    #[serde(deserialize_with = "de::rate")]
    pub sample: f64,
    /// Deadline for a candidate/secondary answer (whole body). Default `5s`.
    #[serde(deserialize_with = "de::duration")]
    pub timeout: Duration,
    /// Shadow requests in flight at most; beyond, dropped as `shadow_queue_full`. Default `1024`.
    #[serde(deserialize_with = "de::positive")]
    pub max_in_flight: usize,
    /// Largest request or response body kept for comparison; larger bodies pass through
    /// untouched and the exchange is `body_too_large`. Default `4MiB`.
    #[serde(deserialize_with = "de::size")]
    pub max_body_bytes: usize,
    /// All the bytes shadows may hold at once (request and response copies, candidate and
    /// secondary answers, until compared); a copy that would cross it is given up and the
    /// exchange is `memory_budget`. `max_in_flight × max_body_bytes` bounds nothing useful on its
    /// own (1024 × 4 MiB × 4 copies). Default `64MiB`.
    #[serde(deserialize_with = "de::size")]
    pub max_buffered_bytes: usize,
    /// Headers removed from shadow requests (e.g. `authorization` when the candidate must not
    /// see credentials). Default none.
    #[serde(deserialize_with = "de::header_names")]
    pub strip_headers: Vec<HeaderName>,
    /// Headers set on shadow requests. Default `{x-shadow-request: "1"}`.
    #[serde(deserialize_with = "de::header_map")]
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// The loop-prevention marker: always set on shadow copies (value `1` unless `set_headers`
    /// gives one); a request already carrying it is never shadowed. Default `x-shadow-request`.
    #[serde(deserialize_with = "de::header_name")]
    pub marker: HeaderName,
    /// Host header sent to the candidate/secondary: `candidate` (their own authority) or
    /// `original` (the client's Host). Default `candidate`.
    pub host: HostPolicy,
    pub circuit: CircuitConfig,
    pub overload: OverloadConfig,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            methods: vec![Method::GET, Method::HEAD, Method::OPTIONS],
            routes: Vec::new(),
            sample: 1.0,
            timeout: Duration::from_secs(5),
            max_in_flight: 1024,
            max_body_bytes: 4 << 20,
            max_buffered_bytes: 64 << 20,
            strip_headers: Vec::new(),
            set_headers: vec![(
                HeaderName::from_static("x-shadow-request"),
                HeaderValue::from_static("1"),
            )],
            marker: HeaderName::from_static("x-shadow-request"),
            host: HostPolicy::Candidate,
            circuit: CircuitConfig::default(),
            overload: OverloadConfig::default(),
        }
    }
}

/// One `shadow.routes` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Endpoint pattern, `METHOD /path/{param}`, `*` for any.
    #[serde(rename = "match", deserialize_with = "de::endpoint")]
    pub pattern: EndpointPattern,
    /// Whether matching requests are mirrored. Default `true`.
    #[serde(default = "de::yes")]
    pub mirror: bool,
}

/// Which Host header shadow copies carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostPolicy {
    Candidate,
    Original,
}

/// `shadow.circuit:` — stop sending to a failing candidate for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// Consecutive candidate failures (transport error, timeout or 5xx) that open the circuit;
    /// `0` disables the breaker. Default `5`.
    pub failures: u32,
    /// How long the circuit stays open before one probe is let through. Default `10s`.
    #[serde(deserialize_with = "de::duration")]
    pub cooldown: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Duration::from_secs(10),
        }
    }
}

/// `shadow.overload:` — shed shadows while the proxy's I/O threads are saturated, so that
/// forwarding keeps the whole of the cores it may use (`src/ingest/overload.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadConfig {
    /// Busy share of the I/O threads (of the cores the process may run on) above which shadows
    /// start to shed, `0.9` or `90%`; `100%` turns shedding off. Default `90%`.
    #[serde(deserialize_with = "de::rate")]
    pub busy: f64,
    /// How long the share must stay above `busy` before shedding starts. Default `1s`.
    #[serde(deserialize_with = "de::duration")]
    pub after: Duration,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        Self {
            busy: 0.9,
            after: Duration::from_secs(1),
        }
    }
}

/// `compare:` — the comparison workers, off the request path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompareConfig {
    /// OS threads comparing exchanges. Default `1`.
    #[serde(deserialize_with = "de::positive")]
    pub workers: usize,
    /// Exchanges waiting for a worker at most; beyond, dropped as `compare_queue_full`.
    /// Default `1024`.
    #[serde(deserialize_with = "de::positive")]
    pub queue: usize,
    /// Largest decoded (decompressed) body compared. Default `16MiB`.
    #[serde(deserialize_with = "de::size")]
    pub max_decoded_bytes: usize,
    /// Differences kept per exchange. Default `1000`.
    #[serde(deserialize_with = "de::positive")]
    pub max_differences: usize,
    /// Niceness of the comparison threads (Linux; 0 to 19): under CPU pressure forwarding wins
    /// and comparisons shed as `compare_queue_full`. `0` runs them like the rest. Default `10`.
    #[serde(deserialize_with = "de::nice")]
    pub nice: i32,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            queue: 1024,
            max_decoded_bytes: 16 << 20,
            max_differences: 1000,
            nice: 10,
        }
    }
}

/// `grouping:` — how requests are grouped into endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupingConfig {
    /// Distinct automatic endpoints at most; new ones beyond are grouped as `OTHER`, so metric
    /// labels stay bounded. Default `200`.
    #[serde(deserialize_with = "de::positive")]
    pub max_endpoints: usize,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        Self { max_endpoints: 200 }
    }
}

/// `publish:` — what published events carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Bodies larger than this are published truncated. Default `16KiB`.
    #[serde(deserialize_with = "de::size")]
    pub max_body_bytes: usize,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 10,
        }
    }
}

/// `sinks:` — where events go. With no sink configured, events go to
/// `shadowdiff-events.jsonl` (the file sink's defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    pub file: Option<FileSinkConfig>,
    /// `sinks.kafka:`, owned by the Kafka sink ([`KafkaConfig`]: every key and its default).
    /// Default none.
    pub kafka: Option<KafkaConfig>,
}

/// `sinks.file:` — JSONL events, rotated by size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    /// Default `shadowdiff-events.jsonl` (relative to the working directory).
    pub path: PathBuf,
    /// Rotate when the file would exceed this. Default `100MiB`.
    #[serde(deserialize_with = "de::size")]
    pub rotate_bytes: usize,
    /// Rotated files kept (`path.1` … `path.{keep}`). Default `5`.
    #[serde(deserialize_with = "de::positive")]
    pub keep: usize,
    /// Events waiting for the writer at most; beyond, dropped and counted. Default `4096`.
    #[serde(deserialize_with = "de::positive")]
    pub queue: usize,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("shadowdiff-events.jsonl"),
            rotate_bytes: 100 << 20,
            keep: 5,
            queue: 4096,
        }
    }
}

/// `redact:` — what is never published. `authorization`, `cookie`, `set-cookie` and
/// `proxy-authorization` are always redacted, whatever this says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Header names whose values are never published. Default the four above.
    #[serde(deserialize_with = "de::header_names")]
    pub headers: Vec<HeaderName>,
    /// JSON paths (rules syntax, `*` and `**`) whose values are never published. Default none.
    #[serde(deserialize_with = "de::path_patterns")]
    pub paths: Vec<crate::compare::pattern::PathPattern>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            headers: crate::compare::ALWAYS_REDACTED
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            paths: Vec::new(),
        }
    }
}

/// `log:` — logging to stderr.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json` (one object per line, for production). Default `human`.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `shadowdiff=debug,hyper=info`. Default `info`;
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// `stats:` — read by the statistics module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Longest window the summary answers for. Default `15m`.
    #[serde(deserialize_with = "de::duration")]
    pub window: Duration,
    /// Resolution of the rolling window. Default `1m`.
    #[serde(deserialize_with = "de::duration")]
    pub bucket: Duration,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            bucket: Duration::from_secs(60),
        }
    }
}

/// `noise:` — when a field counts as learned noise (only with a `secondary`; see
/// [`crate::stats::noise::NoiseModel`] for the rule). An addition to DESIGN.md's file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseSection {
    /// Exchanges with a secondary answer, per endpoint, before a field may be called noisy.
    /// Default `30`.
    pub min_samples: u64,
    /// Primary and secondary must differ on a field in at least this fraction of exchanges for
    /// it to be noise. Default `1%`.
    #[serde(deserialize_with = "de::rate")]
    pub absolute: f64,
    /// The candidate may differ on a noisy field at most (1 + this) × as often as the secondary
    /// does; more often, the field is real. Default `20%`.
    #[serde(deserialize_with = "de::rate")]
    pub relative: f64,
}

impl Default for NoiseSection {
    fn default() -> Self {
        let d = crate::stats::noise::NoiseConfig::default();
        Self {
            min_samples: d.min_samples,
            absolute: d.absolute,
            relative: d.relative,
        }
    }
}

impl NoiseSection {
    pub fn model_config(&self, max_endpoints: usize) -> crate::stats::noise::NoiseConfig {
        crate::stats::noise::NoiseConfig {
            min_samples: self.min_samples,
            absolute: self.absolute,
            relative: self.relative,
            max_endpoints: max_endpoints.max(1),
            ..Default::default()
        }
    }
}

/// Sections validated key by key: (path, keys that are themselves sections).
type Check = fn(&Yaml) -> Result<(), serde_yaml_ng::Error>;

fn check<T: serde::de::DeserializeOwned>(v: &Yaml) -> Result<(), serde_yaml_ng::Error> {
    serde_yaml_ng::from_value::<T>(v.clone()).map(|_| ())
}

const SECTIONS: &[(&[&str], Check, &[&str])] = &[
    (
        &[],
        check::<Config>,
        &[
            "shadow", "compare", "grouping", "publish", "sinks", "redact", "log", "stats", "gate",
            "noise", "admin",
        ],
    ),
    (&["admin"], check::<AdminConfig>, &[]),
    (&["shadow"], check::<ShadowConfig>, &["circuit", "overload"]),
    (&["shadow", "circuit"], check::<CircuitConfig>, &[]),
    (&["shadow", "overload"], check::<OverloadConfig>, &[]),
    (&["compare"], check::<CompareConfig>, &[]),
    (&["grouping"], check::<GroupingConfig>, &[]),
    (&["publish"], check::<PublishConfig>, &[]),
    (&["sinks"], check::<SinksConfig>, &["file", "kafka"]),
    (&["sinks", "file"], check::<FileSinkConfig>, &[]),
    (&["sinks", "kafka"], check::<KafkaConfig>, &[]),
    (&["redact"], check::<RedactConfig>, &[]),
    (&["log"], check::<LogConfig>, &[]),
    (&["stats"], check::<StatsConfig>, &[]),
    (&["gate"], check::<crate::stats::GateConfig>, &[]),
    (&["noise"], check::<NoiseSection>, &[]),
];

fn lookup<'v>(doc: &'v Yaml, path: &[&str]) -> Option<&'v Yaml> {
    path.iter().try_fold(doc, |v, k| v.get(k))
}

/// serde_yaml_ng appends "at line L column C" to some messages; positions inside a one-key
/// document are meaningless to the user, so drop them.
fn clean(e: &serde_yaml_ng::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl Config {
    /// Reads and validates a config file (not its rules: see [`Config::load_rules`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigProblem {
                file: path.to_path_buf(),
                line: None,
                reason: format!("cannot read: {e}"),
            }])
        })?;
        let mut cfg = Self::from_yaml(path, &text)?;
        // Relative rules paths are relative to the config file, like includes in most servers.
        if let (Some(r), Some(dir)) = (&cfg.rules, path.parent())
            && r.is_relative()
            && !dir.as_os_str().is_empty()
        {
            cfg.rules = Some(dir.join(r));
        }
        Ok(cfg)
    }

    /// Validates a config text; `file` is used in messages.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let lines = LineIndex::new(text);
        let mut problems = Vec::new();
        let at = |line: Option<usize>, reason: String| ConfigProblem {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let doc: Yaml = match serde_yaml_ng::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(at(
                    e.location().map(|l| l.line()),
                    format!("not valid YAML: {}", clean(&e)),
                ));
                return Err(ConfigErrors(problems));
            }
        };
        let doc = match doc {
            Yaml::Null => Yaml::Mapping(Mapping::new()),
            Yaml::Mapping(_) => doc,
            other => {
                problems.push(at(
                    Some(1),
                    format!("expected a mapping of settings, got {}", kind(&other)),
                ));
                return Err(ConfigErrors(problems));
            }
        };
        for (path, check_section, nested) in SECTIONS {
            let Some(Yaml::Mapping(section)) = lookup(&doc, path) else {
                continue; // absent, or not a mapping: reported by the parent's check
            };
            for (k, v) in section {
                let key = k.as_str().unwrap_or("?");
                if nested.contains(&key) && matches!(v, Yaml::Mapping(_)) {
                    continue; // checked key by key as its own section
                }
                if *path == ["shadow"]
                    && key == "routes"
                    && let Yaml::Sequence(items) = v
                {
                    // One problem per bad route, at the route's own line.
                    let starts = lines.list_items_at(&["shadow", "routes"]);
                    for (i, item) in items.iter().enumerate() {
                        if let Err(e) = check::<RouteConfig>(item) {
                            problems.push(at(
                                starts
                                    .get(i)
                                    .copied()
                                    .or(lines.key_path(&["shadow", "routes"])),
                                format!("shadow.routes[{i}]: {}", clean(&e)),
                            ));
                        }
                    }
                    continue;
                }
                let mut one = Mapping::new();
                one.insert(k.clone(), v.clone());
                if let Err(e) = check_section(&Yaml::Mapping(one)) {
                    let mut full: Vec<&str> = path.to_vec();
                    full.push(key);
                    problems.push(at(
                        lines.key_path(&full),
                        format!("{}: {}", full.join("."), clean(&e)),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        let mut cfg: Config = match serde_yaml_ng::from_value(doc) {
            Ok(c) => c,
            Err(e) => {
                problems.push(at(None, clean(&e)));
                return Err(ConfigErrors(problems));
            }
        };
        // Checks across fields.
        if let (Some(p), Some(c)) = (&cfg.primary, &cfg.candidate)
            && p.authority() == c.authority()
        {
            problems.push(at(
                lines.top_key("candidate"),
                format!(
                    "candidate: {} is the primary too; shadow copies would hit production twice",
                    c
                ),
            ));
        }
        if let Some(k) = &cfg.sinks.kafka
            && k.stats_interval < Duration::from_millis(100)
        {
            problems.push(at(
                lines.key_path(&["sinks", "kafka", "stats_interval"]),
                "sinks.kafka.stats_interval: at least 100ms".into(),
            ));
        }
        // A token file is relative to the config file, like the rules; read now, so
        // `check-config` reports an unreadable or empty one.
        if let Some(a) = &mut cfg.admin {
            if let Some(dir) = file.parent() {
                a.resolve_paths(dir);
            }
            if let Err(e) = a.token() {
                problems.push(at(lines.key_path(&["admin", e.key()]), e.to_string()));
            }
        }
        if cfg.stats.bucket > cfg.stats.window {
            problems.push(at(
                lines.key_path(&["stats", "bucket"]),
                "stats.bucket: longer than stats.window".into(),
            ));
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// The rules path in effect: the configured one, else `diff-rules/` when it exists.
    pub fn rules_path(&self) -> Option<PathBuf> {
        self.rules.clone().or_else(|| {
            let d = PathBuf::from("diff-rules");
            d.is_dir().then_some(d)
        })
    }

    /// Loads the rules the config points at, problems reported like the config's own.
    pub fn load_rules(&self) -> Result<RuleSet, ConfigErrors> {
        let Some(p) = self.rules_path() else {
            return Ok(RuleSet::default());
        };
        if !p.exists() {
            return Err(ConfigErrors(vec![ConfigProblem {
                file: p.clone(),
                line: None,
                reason: "rules: no such file or folder".into(),
            }]));
        }
        RuleSet::load(&p).map_err(|e| {
            ConfigErrors(
                e.0.into_iter()
                    .map(|r| ConfigProblem {
                        file: r.file,
                        line: r.line,
                        reason: match r.rule {
                            Some(rule) => format!("{rule}: {}", r.reason),
                            None => r.reason,
                        },
                    })
                    .collect(),
            )
        })
    }

    /// Loads a config file and its rules, every problem of both reported together.
    pub fn check_file(path: &Path) -> Result<(Config, RuleSet), ConfigErrors> {
        let cfg = match Config::load(path) {
            Ok(c) => c,
            Err(mut errs) => {
                // Still report rule problems when the rules path itself could be read.
                if let Some(rules) = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| serde_yaml_ng::from_str::<Yaml>(&t).ok())
                    .and_then(|d| d.get("rules").and_then(|r| r.as_str().map(PathBuf::from)))
                {
                    let rules = match path.parent() {
                        Some(dir) if rules.is_relative() => dir.join(rules),
                        _ => rules,
                    };
                    let probe = Config {
                        rules: Some(rules),
                        ..Config::default()
                    };
                    if let Err(mut more) = probe.load_rules() {
                        errs.0.append(&mut more.0);
                    }
                }
                return Err(errs);
            }
        };
        let rules = cfg.load_rules()?;
        Ok((cfg, rules))
    }

    /// The sidecar's name in events and statistics: `instance`, else the host name
    /// (`HOSTNAME`), else `shadowdiff`.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "shadowdiff".into())
        })
    }

    /// Builds what the proxy runs with; `primary` and `candidate` must be set by now.
    pub fn into_proxy(self, rules: RuleSet) -> Result<ProxyConfig, ConfigErrors> {
        let missing = |what: &str| ConfigProblem {
            file: PathBuf::from("<config>"),
            line: None,
            reason: format!("{what}: required (in the config file or as --{what})"),
        };
        let mut problems = Vec::new();
        if self.primary.is_none() {
            problems.push(missing("primary"));
        }
        if self.candidate.is_none() {
            problems.push(missing("candidate"));
        }
        let (Some(primary), Some(candidate)) = (self.primary.clone(), self.candidate.clone())
        else {
            return Err(ConfigErrors(problems));
        };
        let instance = self.instance_name();
        Ok(ProxyConfig {
            primary,
            candidate,
            rules: Arc::new(rules),
            instance,
            noise: Arc::new(crate::stats::noise::NoiseModel::new(
                self.noise.model_config(self.grouping.max_endpoints),
            )),
            file: self,
        })
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// What the proxy runs with: the file's settings plus the resolved upstreams, compiled rules
/// and instance name.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub primary: Upstream,
    pub candidate: Upstream,
    pub rules: Arc<RuleSet>,
    pub instance: String,
    /// Learned noise (per endpoint and field), shared with the admin API; only used when a
    /// secondary answers.
    pub noise: Arc<crate::stats::noise::NoiseModel>,
    /// Everything else, as written (or defaulted). `file.primary`/`file.candidate` are ignored.
    pub file: Config,
}

impl ProxyConfig {
    /// Defaults everywhere, no rules: what tests and embedders start from.
    pub fn new(primary: Upstream, candidate: Upstream) -> Self {
        Self {
            primary,
            candidate,
            rules: Arc::new(RuleSet::default()),
            instance: "shadowdiff".into(),
            noise: Arc::default(),
            file: Config::default(),
        }
    }
}
