//! `shadowdiff.yaml` (DESIGN.md, "Config file"): the file form ([`Config`]), its validation
//! (every problem at once, each with file, line and reason) and the built form the proxy runs
//! with ([`ProxyConfig`]).
//!
//! How validation reports everything at once: the text is parsed to a YAML value first (a syntax
//! error carries its line); then every key of every section is deserialised on its own into the
//! section's struct (`deny_unknown_fields`), so one bad value cannot hide the next; values are
//! checked inside their deserialisers (units, URLs, methods, header names, patterns); finally
//! the rules the config points at are loaded ([`RuleSet::load`], the one rules loader) and their
//! problems added. The machinery and the [`Problem`] type are shared with the rules loader
//! ([`crate::yaml`]).

/// The property of the `config` fuzz target and its corpus replay.
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod tests;

use crate::admin::config::{AdminConfig, AdminConfigError};
pub use crate::compare::grpc::GrpcConfig;
use crate::compare::rules::{RuleErrors, RuleSet};
pub use crate::ingest::config::{
    CircuitConfig, HostPolicy, LimitsConfig, OverloadConfig, ProxyConfig, RouteConfig, ShadowConfig,
};
use crate::ingest::grouping::GroupingConfig;
use crate::ingest::rewrite::{RewriteRule, UpstreamRewrite};
pub use crate::ingest::tls::{TlsConfig, TlsSection};
pub use crate::pipeline::CompareConfig;
pub use crate::record::writer::RecordConfig;
pub use crate::redact::RedactConfig;
pub use crate::sink::file::FileSinkConfig;
use crate::sink::kafka::KafkaConfig;
use crate::stats::StatsConfig;
use crate::stats::noise::NoiseConfig;
use crate::units::de;
use crate::yaml::{self, LineIndex, Problem, check};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as Yaml};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use de::{Protocol, Upstream};

/// Every problem found in a config file (or in the rules it points at); a config with any
/// problem is refused as a whole.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in configuration:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<Problem>);

impl From<RuleErrors> for ConfigErrors {
    fn from(e: RuleErrors) -> Self {
        ConfigErrors(e.0)
    }
}

/// The admin settings as they stand at start (after `--admin`), with no file line to point at.
impl From<AdminConfigError> for ConfigErrors {
    fn from(e: AdminConfigError) -> Self {
        ConfigErrors(vec![Problem::new(
            Path::new("<config>"),
            None,
            e.to_string(),
        )])
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
    /// Admin API, metrics and UI: an address, or `{listen, token_file, allowed_hosts,
    /// acknowledgements}`
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
    /// `limits:`, owned by the proxy's inbound side ([`LimitsConfig`]: every key and its
    /// default).
    pub limits: LimitsConfig,
    pub compare: CompareConfig,
    /// `grpc:`, owned by the comparator's gRPC decoding ([`GrpcConfig`]): the descriptor set
    /// gRPC messages are decoded with. An addition to DESIGN.md's file.
    pub grpc: GrpcConfig,
    /// `grouping:`, owned by the grouping ([`crate::ingest::grouping::GroupingConfig`]); its
    /// `max_endpoints` caps the statistics and the noise model too.
    pub grouping: GroupingConfig,
    pub publish: PublishConfig,
    pub sinks: SinksConfig,
    /// `redact:`, owned by the redaction module ([`RedactConfig`]: every key and its default).
    pub redact: RedactConfig,
    /// How long shutdown waits for in-flight requests, shadows and sinks; `0s` stops at once.
    /// Default `10s`.
    #[serde(deserialize_with = "de::duration")]
    pub shutdown_grace: Duration,
    pub log: LogConfig,
    /// `stats:`, owned by the statistics ([`crate::stats::StatsConfig`]).
    pub stats: StatsConfig,
    pub gate: crate::stats::GateConfig,
    /// `noise:`, owned by the noise model ([`crate::stats::noise::NoiseConfig`]). An addition to
    /// DESIGN.md's file.
    pub noise: NoiseConfig,
    /// `tls:`, per `https://` upstream, owned by [`crate::ingest::tls`] ([`TlsSection`]: every
    /// key and its default). Default `{}`.
    pub tls: TlsSection,
    /// `record:`, owned by the recorder ([`RecordConfig`]: every key and its default). Default
    /// none: nothing is recorded.
    pub record: Option<RecordConfig>,
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
            limits: LimitsConfig::default(),
            compare: CompareConfig::default(),
            grpc: GrpcConfig::default(),
            grouping: GroupingConfig::default(),
            publish: PublishConfig::default(),
            sinks: SinksConfig::default(),
            redact: RedactConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            log: LogConfig::default(),
            stats: StatsConfig::default(),
            gate: crate::stats::GateConfig::default(),
            noise: NoiseConfig::default(),
            tls: TlsSection::default(),
            record: None,
        }
    }
}

/// `publish:` — what published events carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Every published value (a body, a difference's value or excerpt, a header value, a query)
    /// larger than this is published truncated (`src/redact/mod.rs`); at least 1 byte.
    /// Default `16KiB`.
    #[serde(deserialize_with = "de::positive_size")]
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

/// Sections validated key by key: (path, keys that are themselves sections).
type Check = fn(&Yaml) -> Result<(), serde_yaml_ng::Error>;

const SECTIONS: &[(&[&str], Check, &[&str])] = &[
    (
        &[],
        check::<Config>,
        &[
            "shadow", "limits", "compare", "grpc", "grouping", "publish", "sinks", "redact", "log",
            "stats", "gate", "noise", "admin", "tls", "record",
        ],
    ),
    (
        &["tls"],
        check::<TlsSection>,
        &["primary", "candidate", "secondary"],
    ),
    (&["tls", "primary"], check::<TlsConfig>, &[]),
    (&["tls", "candidate"], check::<TlsConfig>, &[]),
    (&["tls", "secondary"], check::<TlsConfig>, &[]),
    (&["admin"], check::<AdminConfig>, &[]),
    (
        &["shadow"],
        check::<ShadowConfig>,
        &["circuit", "overload", "candidate", "secondary"],
    ),
    (&["shadow", "candidate"], check::<UpstreamRewrite>, &[]),
    (&["shadow", "secondary"], check::<UpstreamRewrite>, &[]),
    (&["shadow", "circuit"], check::<CircuitConfig>, &[]),
    (&["shadow", "overload"], check::<OverloadConfig>, &[]),
    (&["limits"], check::<LimitsConfig>, &[]),
    (&["compare"], check::<CompareConfig>, &[]),
    (&["grpc"], check::<GrpcConfig>, &[]),
    (&["grouping"], check::<GroupingConfig>, &[]),
    (&["publish"], check::<PublishConfig>, &[]),
    (&["sinks"], check::<SinksConfig>, &["file", "kafka"]),
    (&["sinks", "file"], check::<FileSinkConfig>, &[]),
    (&["sinks", "kafka"], check::<KafkaConfig>, &[]),
    (&["redact"], check::<RedactConfig>, &[]),
    (&["log"], check::<LogConfig>, &[]),
    (&["stats"], check::<StatsConfig>, &[]),
    (&["gate"], check::<crate::stats::GateConfig>, &[]),
    (&["noise"], check::<NoiseConfig>, &[]),
    (&["record"], check::<RecordConfig>, &[]),
];

/// Lists whose items are checked one by one, each problem at its item's line: (section, key,
/// the item's check).
const LISTS: &[(&[&str], &str, Check)] = &[
    (&["shadow"], "routes", check::<RouteConfig>),
    (&["shadow", "candidate"], "rewrite", check::<RewriteRule>),
    (&["shadow", "secondary"], "rewrite", check::<RewriteRule>),
];

fn lookup<'v>(doc: &'v Yaml, path: &[&str]) -> Option<&'v Yaml> {
    path.iter().try_fold(doc, |v, k| v.get(k))
}

impl Config {
    /// Reads and validates a config file (not its rules: see [`Config::load_rules`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = yaml::read(path).map_err(|p| ConfigErrors(vec![p]))?;
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
        let at = |line: Option<usize>, reason: String| Problem::new(file, line, reason);
        let doc = yaml::parse(file, text).map_err(|p| ConfigErrors(vec![p]))?;
        let doc = match doc {
            Yaml::Null => Yaml::Mapping(Mapping::new()),
            Yaml::Mapping(_) => doc,
            other => {
                problems.push(at(
                    Some(1),
                    format!("expected a mapping of settings, got {}", yaml::kind(&other)),
                ));
                return Err(ConfigErrors(problems));
            }
        };
        'sections: for (path, check_section, nested) in SECTIONS {
            let Some(Yaml::Mapping(section)) = lookup(&doc, path) else {
                continue; // absent, or not a mapping: reported by the parent's check
            };
            for (k, v) in section {
                if !yaml::room(&problems, 0) {
                    break 'sections;
                }
                // serde (and `as_str`) read a tagged key (`!x shadow:`) as its string, which
                // would slip past the checks below (they look sections up by plain key).
                let Some(key) = k.as_str().filter(|_| !matches!(k, Yaml::Tagged(_))) else {
                    let shown = yaml::short(k);
                    let line = match k {
                        Yaml::Sequence(_) | Yaml::Mapping(_) => lines.complex_key(),
                        _ => lines.mention(shown.trim_start_matches("tagged ")),
                    };
                    problems.push(at(
                        line.or(Some(1)),
                        format!(
                            "{}a key must be a plain string, got {shown}",
                            path.iter().map(|p| format!("{p}: ")).collect::<String>()
                        ),
                    ));
                    continue;
                };
                if nested.contains(&key) && matches!(v, Yaml::Mapping(_)) {
                    continue; // checked key by key as its own section
                }
                if let Some((.., check_item)) =
                    LISTS.iter().find(|(p, k, _)| p == path && *k == key)
                    && let Yaml::Sequence(items) = v
                {
                    // One problem per bad item, at the item's own line.
                    let mut full: Vec<&str> = path.to_vec();
                    full.push(key);
                    let starts = lines.list_items_at(&full);
                    for (i, item) in items.iter().enumerate() {
                        if let Err(e) = check_item(item) {
                            if !yaml::room(&problems, 0) {
                                break 'sections;
                            }
                            problems.push(at(
                                starts.get(i).copied().or(lines.key_path(&full)),
                                format!("{}[{i}]: {}", full.join("."), yaml::message(&e)),
                            ));
                        }
                    }
                    continue;
                }
                if let Err(e) = check_section(&yaml::one_key(k, v)) {
                    let mut full: Vec<&str> = path.to_vec();
                    full.push(key);
                    problems.push(at(
                        lines.key_path(&full),
                        format!("{}: {}", full.join("."), yaml::message(&e)),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            yaml::cap(file, &mut problems, 0);
            return Err(ConfigErrors(problems));
        }
        let mut cfg: Config = match serde_yaml_ng::from_value(doc) {
            Ok(c) => c,
            Err(e) => {
                // Not expected once every key passed on its own; the file as a whole, then.
                problems.push(at(Some(1), yaml::message(&e)));
                return Err(ConfigErrors(problems));
            }
        };
        // Checks across fields.
        if let (Some(p), Some(c)) = (&cfg.primary, &cfg.candidate)
            && p.authority() == c.authority()
        {
            problems.push(at(
                lines.key_path(&["candidate"]),
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
        // Certificate files are relative to the config file too, and read now: `check-config`
        // reports a missing, unparsable or mismatched one at its key's line.
        if let Some(dir) = file.parent() {
            cfg.tls.resolve_paths(dir);
        }
        for e in cfg.tls.check([
            cfg.primary.as_ref(),
            cfg.candidate.as_ref(),
            cfg.secondary.as_ref(),
        ]) {
            let line = lines.key_path(&e.path());
            problems.push(at(line, e.to_string()));
        }
        // h2 over TLS would need ALPN on the upstream connections, which is not built yet.
        for (key, up) in [
            ("primary", cfg.primary.as_ref()),
            ("candidate", cfg.candidate.as_ref()),
            ("secondary", cfg.secondary.as_ref()),
        ] {
            if let Some(up) = up
                && up.is_tls()
                && up.protocol() == crate::units::de::Protocol::H2
            {
                problems.push(at(
                    lines.key_path(&[key]),
                    format!("{key}: protocol h2 over https:// is not supported yet (use http1 or auto, or h2 over http://)"),
                ));
            }
        }
        // The descriptor set is relative to the config file too, and read now: `check-config`
        // reports a missing or unreadable one, and the comparator never touches a file.
        if let Err(e) = load_descriptors(&mut cfg.grpc, file.parent()) {
            problems.push(at(lines.key_path(&["grpc", "descriptors"]), e));
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

    /// Loads the rules the config points at (none configured and no `diff-rules/`: no rules),
    /// with [`RuleSet::load`]; its problems are reported with the config's own.
    pub fn load_rules(&self) -> Result<RuleSet, ConfigErrors> {
        match self.rules_path() {
            Some(p) => Ok(RuleSet::load(&p)?),
            None => Ok(RuleSet::default()),
        }
    }

    /// Loads a config file and its rules, every problem of both reported together.
    pub fn check_file(path: &Path) -> Result<(Config, RuleSet), ConfigErrors> {
        let cfg = match Config::load(path) {
            Ok(c) => c,
            Err(mut errs) => {
                // Still report rule problems when the rules path itself could be read.
                if let Some(rules) = yaml::read(path)
                    .ok()
                    .and_then(|t| yaml::parse(path, &t).ok())
                    .and_then(|d| d.get("rules").and_then(|r| r.as_str().map(PathBuf::from)))
                {
                    let rules = match path.parent() {
                        Some(dir) if rules.is_relative() => dir.join(rules),
                        _ => rules,
                    };
                    if let Err(mut more) = RuleSet::load(&rules) {
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
    pub fn into_proxy(&self, rules: RuleSet) -> Result<ProxyConfig, ConfigErrors> {
        let missing = |what: &str| {
            Problem::new(
                Path::new("<config>"),
                None,
                format!("{what}: required (in the config file or as --{what})"),
            )
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
            listen: self.listen,
            primary,
            candidate,
            secondary: self.secondary.clone(),
            rules: Arc::new(rules),
            instance,
            shadow: self.shadow.clone(),
            limits: self.limits.clone(),
            grouping: self.grouping.clone(),
            tls: self.tls.clone(),
            shutdown_grace: self.shutdown_grace,
        })
    }
}

/// Reads `grpc.descriptors` (relative to `dir`) into `grpc.schema`.
fn load_descriptors(grpc: &mut GrpcConfig, dir: Option<&Path>) -> Result<(), String> {
    let Some(path) = &grpc.descriptors else {
        return Ok(());
    };
    let path = match dir {
        Some(d) if path.is_relative() && !d.as_os_str().is_empty() => d.join(path),
        _ => path.clone(),
    };
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("grpc.descriptors: cannot read {}: {e}", path.display()))?;
    let schema = crate::compare::grpc::Schema::from_bytes(&bytes)
        .map_err(|e| format!("grpc.descriptors: {}: {e}", path.display()))?;
    grpc.descriptors = Some(path);
    grpc.schema = Some(Arc::new(schema));
    Ok(())
}
