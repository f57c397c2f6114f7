//! Deserialisers that validate as they parse, so each bad value is one precise problem.

use crate::compare::pattern::{EndpointPattern, PathPattern};
use crate::units;
use http::{HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;
use serde::de::{Deserializer, Error};
use std::fmt;
use std::time::Duration;

/// A unit value written as a string (`5s`) or, for sizes and rates, a bare number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Float(f64),
    Str(String),
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Str(s) => units::parse_duration(&s).map_err(D::Error::custom),
        Scalar::Int(n) => Err(D::Error::custom(units::UnitError::Duration(n.to_string()))),
        Scalar::Float(n) => Err(D::Error::custom(units::UnitError::Duration(n.to_string()))),
    }
}

/// A duration that must be longer than zero: a deadline, a period, a window. (A zero one
/// would time out every request, spin, or divide by zero.) For every section's use, the
/// `limits:` section included.
pub(crate) fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = duration(d)?;
    if v.is_zero() {
        return Err(D::Error::custom(
            "must be longer than 0 (write 250ms, 5s, …)",
        ));
    }
    Ok(v)
}

/// A size that must be at least one byte: a cap or a budget (a zero one would refuse
/// everything).
pub(crate) fn positive_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = size(d)?;
    if v == 0 {
        return Err(D::Error::custom(
            "must be at least 1 byte (write 64KiB, 4MiB, …)",
        ));
    }
    Ok(v)
}

pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = match Scalar::deserialize(d)? {
        Scalar::Str(s) => units::parse_size(&s).map_err(D::Error::custom)?,
        Scalar::Int(n) => n,
        Scalar::Float(f) => return Err(D::Error::custom(units::UnitError::Size(f.to_string()))),
    };
    usize::try_from(n).map_err(|_| D::Error::custom(format!("size {n} is too large")))
}

pub(crate) fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let s = match Scalar::deserialize(d)? {
        Scalar::Str(s) => s,
        Scalar::Int(n) => n.to_string(),
        Scalar::Float(f) => f.to_string(),
    };
    units::parse_rate(&s).map_err(D::Error::custom)
}

pub(crate) fn opt_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    rate(d).map(Some)
}

pub(crate) fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = u64::deserialize(d)?;
    if n == 0 {
        return Err(D::Error::custom("must be at least 1"));
    }
    usize::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large")))
}

/// A niceness to lower a thread to: 0 (unchanged) to 19 (lowest). Raising priority (negative
/// values) would need privileges a sidecar should not have.
pub(crate) fn nice<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let n = i64::deserialize(d)?;
    if !(0..=19).contains(&n) {
        return Err(D::Error::custom(format!(
            "{n} is not a niceness from 0 (unchanged) to 19 (lowest)"
        )));
    }
    Ok(n as i32)
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn methods<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Method>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|m| {
            let up = m.trim().to_ascii_uppercase();
            if up.is_empty() || !up.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(D::Error::custom(format!("invalid method {m:?}")));
            }
            Method::from_bytes(up.as_bytes())
                .map_err(|_| D::Error::custom(format!("invalid method {m:?}")))
        })
        .collect()
}

pub(crate) fn header_name<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderName, D::Error> {
    let s = String::deserialize(d)?;
    HeaderName::from_bytes(s.trim().as_bytes())
        .map_err(|_| D::Error::custom(format!("invalid header name {s:?}")))
}

pub(crate) fn header_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HeaderName>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            HeaderName::from_bytes(s.trim().as_bytes())
                .map_err(|_| D::Error::custom(format!("invalid header name {s:?}")))
        })
        .collect()
}

pub(crate) fn header_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(HeaderName, HeaderValue)>, D::Error> {
    let m = std::collections::BTreeMap::<String, String>::deserialize(d)?;
    m.iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| D::Error::custom(format!("invalid header name {k:?}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| D::Error::custom(format!("invalid value for header {k}: {v:?}")))?;
            Ok((name, value))
        })
        .collect()
}

pub(crate) fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<EndpointPattern, D::Error> {
    let s = String::deserialize(d)?;
    EndpointPattern::parse(&s).map_err(D::Error::custom)
}

pub(crate) fn path_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathPattern>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| PathPattern::parse(s).map_err(D::Error::custom))
        .collect()
}

/// The port of `host:port` (`[v6]:port`), `None` when there is none; a port that is written
/// must be 1 to 65535.
pub fn port(authority: &str) -> Result<Option<u16>, String> {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match hostport.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => hostport.rfind(':').map_or("", |i| &hostport[i..]),
    };
    let Some(p) = after_host.strip_prefix(':') else {
        return Ok(None);
    };
    let n = (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .then(|| p.parse::<u32>().ok())
        .flatten();
    match n {
        Some(n @ 1..=65535) => Ok(Some(n as u16)),
        _ => Err(format!("port {p:?} is not a port number from 1 to 65535")),
    }
}

/// `sinks.kafka.brokers` (and `--brokers`): comma-separated `host[:port]`, each optionally
/// prefixed by a protocol (`SSL://host:port`), every written port 1 to 65535. librdkafka takes
/// a bad list silently and then never connects.
pub fn check_brokers(list: &str) -> Result<(), String> {
    for b in list.split(',') {
        let b = b.trim();
        let hostport = b.split_once("://").map_or(b, |(_, rest)| rest);
        let host = match hostport.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or("", |(h, _)| h),
            None => hostport.split(':').next().unwrap_or(""),
        };
        if host.is_empty() || hostport.contains(['/', ' ']) {
            return Err(format!("broker {b:?}: expected host:port"));
        }
        port(hostport).map_err(|e| format!("broker {b:?}: {e}"))?;
    }
    Ok(())
}

pub(crate) fn brokers<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_brokers(&s).map_err(D::Error::custom)?;
    Ok(s)
}

/// An upstream base URL, `http://host:port` or `https://host:port` (TLS: `ingest::tls`, with the
/// `tls:` section): scheme and authority only. Written as a URL, or `{url: URL, protocol: http1 |
/// h2 | auto}` ([`Protocol`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    uri: Uri,
    protocol: Protocol,
}

/// The HTTP version spoken to an upstream (`protocol:` of an upstream; DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2: over plain TCP prior-knowledge h2c (RFC 9113 §3.3). Over TLS (`https://`) it is
    /// refused by the config check: h2 by ALPN is not built yet.
    H2,
    /// HTTP/1.1, over plain TCP and over TLS (ALPN offers `http/1.1` only so far). The default.
    #[default]
    Auto,
}

/// What actually goes over an upstream's connections once `auto` is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Http1,
    H2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
            Protocol::Auto => "auto",
        }
    }
}

impl Upstream {
    pub fn parse(s: &str) -> Result<Upstream, String> {
        let uri: Uri = s
            .trim()
            .parse()
            .map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(format!(
                    "{s:?}: expected http://host:port or https://host:port"
                ));
            }
        }
        let Some(authority) = uri.authority() else {
            return Err(format!(
                "{s:?}: expected http://host:port or https://host:port"
            ));
        };
        // `http::Uri` takes any digits as a port, and an unreadable one reads as none: the
        // shadow client would then have dialled port 80.
        port(authority.as_str()).map_err(|e| format!("{s:?}: {e}"))?;
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(format!(
                "{s:?}: give scheme, host and port only; a path prefix for shadows is shadow.candidate.path_prefix"
            ));
        }
        Ok(Upstream {
            uri,
            protocol: Protocol::Auto,
        })
    }

    /// The same upstream spoken to in `protocol`.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The protocol as configured.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The protocol spoken on a plain-TCP connection: `auto` is HTTP/1.1 there, since nothing
    /// negotiates (an h2c upgrade costs a round trip and no gRPC server offers it). A TLS
    /// connection settles `auto` by ALPN instead.
    pub fn cleartext_wire(&self) -> Wire {
        match self.protocol {
            Protocol::H2 => Wire::H2,
            Protocol::Http1 | Protocol::Auto => Wire::Http1,
        }
    }

    /// `host:port` as written.
    pub fn authority(&self) -> &str {
        self.uri.authority().map(|a| a.as_str()).unwrap_or("")
    }

    pub fn scheme(&self) -> &str {
        self.uri.scheme_str().unwrap_or("http")
    }

    /// `https://`: connections are TLS (`ingest::tls`).
    pub fn is_tls(&self) -> bool {
        self.scheme() == "https"
    }

    /// The host without IPv6 brackets: what TLS verifies when no `server_name` is given.
    pub fn host(&self) -> &str {
        self.uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    /// The port, written or the scheme's (80, 443).
    pub fn port(&self) -> u16 {
        self.uri
            .port_u16()
            .unwrap_or(if self.is_tls() { 443 } else { 80 })
    }

    /// The URI for a request's path and query on this upstream.
    pub fn join(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme())
            .authority(self.authority())
            .path_and_query(path_and_query)
            .build()
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.authority())
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Upstream::parse(s)
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// `{url, protocol}`: the long form, for settings beyond the URL.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            url: String,
            #[serde(default)]
            protocol: Protocol,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Url(String),
            Long(Long),
        }
        // An untagged enum would say only "did not match any variant": each form is tried
        // on its own so that a bad key or protocol in the long form is named.
        let v = serde_yaml_ng::Value::deserialize(d)?;
        let form = match &v {
            serde_yaml_ng::Value::Mapping(_) => {
                Form::Long(Long::deserialize(v).map_err(D::Error::custom)?)
            }
            _ => Form::deserialize(v).map_err(|_| {
                D::Error::custom(
                    "expected a URL (http://host:port) or {url: URL, protocol: http1 | h2 | auto}",
                )
            })?,
        };
        match form {
            Form::Url(s) => Upstream::parse(&s).map_err(D::Error::custom),
            Form::Long(l) => Upstream::parse(&l.url)
                .map(|u| u.with_protocol(l.protocol))
                .map_err(D::Error::custom),
        }
    }
}
