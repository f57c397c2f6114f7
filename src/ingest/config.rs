//! The inline proxy's configuration: the `shadow:` and `limits:` sections of the config file
//! (owned here, held by [`crate::config::Config`]) and [`ProxyConfig`], what
//! [`super::proxy::start`] runs with.

use super::grouping::GroupingConfig;
use super::rewrite::UpstreamRewrite;
use super::tls::TlsSection;
use crate::compare::pattern::EndpointPattern;
use crate::compare::rules::RuleSet;
use crate::units::de;
pub use crate::units::de::{Protocol, Upstream, Wire};
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the proxy runs with: where it listens, the upstreams, the compiled rules (for endpoint
/// names), the instance name and the `shadow:`, `limits:` and `grouping:` sections. Built from the config
/// file by [`crate::config::Config::into_proxy`]; the comparison stage's settings (`compare:`,
/// `redact:`, `publish:`) go to the pipeline instead ([`crate::app`]).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub primary: Upstream,
    pub candidate: Upstream,
    pub secondary: Option<Upstream>,
    pub rules: Arc<RuleSet>,
    pub instance: String,
    pub shadow: ShadowConfig,
    pub limits: LimitsConfig,
    pub grouping: GroupingConfig,
    /// `tls:`, for `https://` upstreams (paths already resolved).
    pub tls: TlsSection,
    /// How long shutdown waits for in-flight requests and shadows.
    pub shutdown_grace: Duration,
}

impl ProxyConfig {
    /// Defaults everywhere (the config file's), no rules: what tests and embedders start from.
    pub fn new(primary: Upstream, candidate: Upstream) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            primary,
            candidate,
            secondary: None,
            rules: Arc::new(RuleSet::default()),
            instance: "shadowdiff".into(),
            shadow: ShadowConfig::default(),
            limits: LimitsConfig::default(),
            grouping: GroupingConfig::default(),
            tls: TlsSection::default(),
            shutdown_grace: Duration::from_secs(10),
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
    /// Deadline for a candidate/secondary answer (whole body); more than 0. Default `5s`.
    #[serde(deserialize_with = "de::positive_duration")]
    pub timeout: Duration,
    /// Shadow requests in flight at most; beyond, dropped as `shadow_queue_full`. Default `1024`.
    #[serde(deserialize_with = "de::positive")]
    pub max_in_flight: usize,
    /// Largest request or response body kept for comparison; larger bodies pass through
    /// untouched and the exchange is `body_too_large`; a candidate (or secondary) answer over it
    /// stops being read and is a candidate error (a failed secondary). At least 1 byte. Default `4MiB`.
    #[serde(deserialize_with = "de::positive_size")]
    pub max_body_bytes: usize,
    /// All the bytes shadows may hold at once (request and response copies, candidate and
    /// secondary answers and the buffers they are read through, counted as allocated, until
    /// compared); at least 1 byte; a copy that would cross it is given up and the exchange is `memory_budget`.
    /// `max_in_flight × max_body_bytes` bounds nothing useful on its own (1024 × 4 MiB × 4
    /// copies). Default `24MiB`: with it full and 1,024 shadows in flight, peak RSS is about
    /// idle + 30 MiB + 1.3 × budget (`benches/hostile.sh`), and the sidecar must stay within
    /// 64 MiB over idle (issue 12).
    #[serde(deserialize_with = "de::positive_size")]
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
    /// How copies to the candidate are changed on the way: `{path_prefix, rewrite}`
    /// ([`UpstreamRewrite`]: every key and its default). Default: sent as the client sent them.
    pub candidate: UpstreamRewrite,
    /// The same for the secondary. Default: sent as the client sent them.
    pub secondary: UpstreamRewrite,
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
            max_buffered_bytes: 24 << 20,
            strip_headers: Vec::new(),
            set_headers: vec![(
                HeaderName::from_static("x-shadow-request"),
                HeaderValue::from_static("1"),
            )],
            marker: HeaderName::from_static("x-shadow-request"),
            host: HostPolicy::Candidate,
            circuit: CircuitConfig::default(),
            overload: OverloadConfig::default(),
            candidate: UpstreamRewrite::default(),
            secondary: UpstreamRewrite::default(),
        }
    }
}

impl ShadowConfig {
    /// The part of this section a reload applies ([`MirrorPolicy`]).
    pub fn mirror_policy(&self) -> MirrorPolicy {
        MirrorPolicy {
            methods: self.methods.clone(),
            routes: self.routes.clone(),
            sample: self.sample,
        }
    }
}

/// Which requests are mirrored: `shadow.methods`, `shadow.routes` and `shadow.sample`, the part
/// of `shadow:` that reloads (SIGHUP, a config file change). The rest of `shadow:` sizes
/// connections, buffers and permits made at start, so it takes a restart.
#[derive(Debug, Clone)]
pub struct MirrorPolicy {
    pub methods: Vec<Method>,
    pub routes: Vec<RouteConfig>,
    pub sample: f64,
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
    /// How long the circuit stays open before one probe is let through; more than 0 (`failures:
    /// 0` is how the breaker is turned off). Default `10s`.
    #[serde(deserialize_with = "de::positive_duration")]
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
    /// How long the share must stay above `busy` before shedding starts; `0s` sheds on the
    /// first busy sample. Default `1s`.
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

/// `limits:` — the client side of the proxy: how long a connection may take to send a head or
/// sit idle, how many are served at once, how large a head may be (`src/ingest/inbound.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A request head not complete this long after the connection opened (or, on a kept-alive
    /// connection, after the head's first byte): the connection is closed. Default `10s`.
    #[serde(deserialize_with = "de::positive_duration")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection (HTTP/1.1 between requests, HTTP/2 with no stream open) with no
    /// request for this long is closed. Default `60s`.
    #[serde(deserialize_with = "de::positive_duration")]
    pub idle_timeout: Duration,
    /// Client connections served at once; beyond, new connections wait in the listen backlog
    /// (and idle kept-alive connections are closed to make room). Lowered at start when the
    /// descriptor limit (`RLIMIT_NOFILE`) cannot hold it. Default `10000`.
    #[serde(deserialize_with = "de::positive")]
    pub max_connections: usize,
    /// Largest request head (request line and headers); larger: `431` and the connection closed.
    /// At least `8KiB` (hyper's smallest read buffer). Default `64KiB`.
    #[serde(deserialize_with = "head_bytes")]
    pub max_header_bytes: usize,
}

/// hyper's smallest read buffer: a smaller head cap would make it panic.
pub const MIN_HEADER_BYTES: usize = 8 << 10;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_header_bytes: 64 << 10,
        }
    }
}

fn head_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = de::size(d)?;
    if n < MIN_HEADER_BYTES {
        return Err(serde::de::Error::custom(format!(
            "{} is below the smallest head hyper reads, 8KiB",
            crate::units::format_size(n as u64)
        )));
    }
    Ok(n)
}
