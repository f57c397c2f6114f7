//! Who may use the admin server: the `Host` allow-list (against DNS rebinding) and the bearer
//! token (DESIGN.md, "Config file", `admin`). One middleware runs both, in that order, in front
//! of every route.
//!
//! The `Host` rule. A page on `evil.example` whose name is re-pointed at 127.0.0.1 (DNS rebinding)
//! makes the operator's browser send `Host: evil.example[:port]` to the loopback admin server, and
//! the browser then lets the page read the answer as its own. So a request is answered only when
//! every authority it names (the `Host` header, and the request target's authority for HTTP/2
//! or an absolute-form target) is one of:
//! - `localhost`, or a loopback address (`127.0.0.1`, `[::1]`, ...), with any port (port
//!   forwards and SSH tunnels change the port);
//! - the address the connection arrived on, `ip:port` (the listen address; on `0.0.0.0` or `::`
//!   the address the client dialled, which is what Kubernetes probes and Prometheus send:
//!   `Host: <pod IP>:<port>`), or the configured listen address;
//! - an `admin.allowed_hosts` entry (`name` for any port, `name:port` for one).
//!
//! Anything else is refused with **421 Misdirected Request**, `/healthz` and `/readyz` included
//! (they answer through the same rule, and probes pass it as above). A request with no authority
//! at all (an HTTP/1.0 health checker) is answered: browsers always send `Host`, so it cannot
//! come from a rebinding page.
//!
//! The write rule. A request that changes state (any method but `GET` and `HEAD`: acknowledging
//! a signature) needs the token even on loopback, and without a configured token it is refused
//! with **403**: a page in the operator's browser can send a cross-site form `POST` to
//! `127.0.0.1` (its `Host` is a loopback name, so the `Host` rule lets it by), but it can never
//! attach an `Authorization` header.
//!
//! The token rule. With a token configured, every route except the UI page (`/`, which holds no
//! data: it fetches the API with the token) and `/healthz`, `/readyz` wants
//! `Authorization: Bearer <token>`; otherwise **401** with `WWW-Authenticate: Bearer`. The
//! presented token is compared with the configured one in constant time (both are hashed with
//! SHA-256 and the digests compared without early exit), so timing reveals neither the token
//! nor its length.

use super::config::{AdminConfig, AdminConfigError, AdminToken};
use crate::pipeline::metrics::{MetricFamily, MetricsSource};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Routes answered without a token: the UI page (static, no data) and the probes.
const OPEN_ROUTES: &[&str] = &["/", "/healthz", "/readyz"];

/// The access rules of one admin server, plus counts of what they refused.
pub struct AdminAccess {
    /// The configured listen address, when it names one address (not `0.0.0.0`/`::`).
    listen: Option<SocketAddr>,
    allowed_hosts: Vec<Authority>,
    /// SHA-256 of the token; only the digest is kept, so no copy of the token sits in memory
    /// longer than start-up.
    token: Option<[u8; 32]>,
    refused_host: AtomicU64,
    refused_no_token: AtomicU64,
    refused_bad_token: AtomicU64,
}

impl fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAccess")
            .field("listen", &self.listen)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("token", &self.token.map(|_| "<set>"))
            .finish()
    }
}

impl Default for AdminAccess {
    /// Loopback rules, no token: what an admin server on 127.0.0.1 without `admin:` settings
    /// gets.
    fn default() -> Self {
        Self {
            listen: None,
            allowed_hosts: Vec::new(),
            token: None,
            refused_host: AtomicU64::new(0),
            refused_no_token: AtomicU64::new(0),
            refused_bad_token: AtomicU64::new(0),
        }
    }
}

impl AdminAccess {
    /// The rules of `admin:`: refuses a non-loopback address without a token, reads the token.
    pub fn from_config(c: &AdminConfig) -> Result<AdminAccess, AdminConfigError> {
        let token = c.token()?;
        let mut a = AdminAccess {
            listen: (!c.listen.ip().is_unspecified()).then_some(c.listen),
            allowed_hosts: c.allowed_hosts.clone(),
            ..AdminAccess::default()
        };
        if let Some(t) = token {
            a = a.with_token(&t);
        }
        Ok(a)
    }

    /// Requires `t` on every route but the open ones.
    pub fn with_token(mut self, t: &AdminToken) -> Self {
        self.token = Some(digest(t.expose().as_bytes()));
        self
    }

    /// Whether a token is required.
    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a request naming `h` may be answered on a connection that arrived at `local`.
    pub fn host_allowed(&self, h: &Authority, local: Option<SocketAddr>) -> bool {
        if h.host == "localhost" {
            return true;
        }
        if let Ok(ip) = h.host.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            if ip.is_loopback() {
                return true;
            }
            // No port in `Host` means the scheme's default, 80.
            let port = h.port.unwrap_or(80);
            if local
                .into_iter()
                .chain(self.listen)
                .any(|a| a.ip().to_canonical() == ip && a.port() == port)
            {
                return true;
            }
        }
        self.allowed_hosts
            .iter()
            .any(|a| a.host == h.host && a.port.is_none_or(|p| p == h.port.unwrap_or(80)))
    }

    /// Whether the `Authorization` header carries the configured token (always true when none
    /// is configured).
    fn authorized(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(want) = &self.token else {
            return Ok(());
        };
        let Some(presented) = bearer(headers) else {
            return Err(Refusal::NoToken);
        };
        if tokens_match(want, presented) {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }

    fn count(&self, r: &Refusal) {
        let c = match r {
            Refusal::Host(_) => &self.refused_host,
            Refusal::NoToken | Refusal::WriteWithoutToken => &self.refused_no_token,
            Refusal::BadToken => &self.refused_bad_token,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl MetricsSource for AdminAccess {
    fn collect(&self) -> Vec<MetricFamily> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            MetricFamily::counter(
                "shadowdiff_admin_refused_total",
                "Admin requests refused: a Host not served here (DNS rebinding), no token, a wrong token",
            )
            .with(&[("reason", "host")], n(&self.refused_host))
            .with(&[("reason", "no_token")], n(&self.refused_no_token))
            .with(&[("reason", "bad_token")], n(&self.refused_bad_token)),
        ]
    }
}

/// The connection's local address, recorded per connection by [`super::serve`]: with a listener
/// on `0.0.0.0` it is the address the client actually dialled.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub Option<SocketAddr>);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for LocalAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        LocalAddr(stream.io().local_addr().ok())
    }
}

/// A `Host` value, a URI authority or an `allowed_hosts` entry, split into host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Lower case; an IPv6 address without its brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    /// `name`, `name:port`, `1.2.3.4[:port]`, `[v6][:port]`; `None` for anything else
    /// (user info, bare IPv6, an empty or non-numeric port, characters no host name has).
    pub fn parse(s: &str) -> Option<Authority> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (v6, port)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().ok()?)
            }
            Some(_) => return None,
        };
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
        if host.is_empty()
            || !host.bytes().all(ok_char)
            || (host.contains(':') && !s.starts_with('['))
        {
            return None;
        }
        Some(Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// SHA-256, so tokens of any length compare as 32 bytes.
fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Constant-time equality of the configured token's digest and a presented token: the presented
/// token is hashed (its length is the caller's own knowledge), then all 32 bytes are compared
/// without an early exit.
pub fn tokens_match(want: &[u8; 32], presented: &[u8]) -> bool {
    ct_eq(want, &digest(presented))
}

/// Equal without a data-dependent branch: every byte is visited, differences are OR-ed together.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    // Keeps the optimiser from turning the loop back into a comparison that exits early.
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = v.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = v.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let t = rest.trim_ascii();
    (!t.is_empty()).then_some(t)
}

enum Refusal {
    Host(String),
    NoToken,
    BadToken,
    /// A state-changing request to a server with no token configured.
    WriteWithoutToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let challenge = |v: &'static str| [(header::WWW_AUTHENTICATE, HeaderValue::from_static(v))];
        match self {
            Refusal::Host(h) => (
                StatusCode::MISDIRECTED_REQUEST,
                axum::Json(json!({
                    "error": format!(
                        "Host {h:?} is not served here (DNS rebinding protection): use the listen \
                         address or localhost, or list the name in admin.allowed_hosts"
                    )
                })),
            )
                .into_response(),
            Refusal::NoToken => (
                StatusCode::UNAUTHORIZED,
                challenge("Bearer realm=\"shadowdiff\""),
                axum::Json(json!({
                    "error": "this admin server wants Authorization: Bearer <token> (admin.token_file)"
                })),
            )
                .into_response(),
            Refusal::WriteWithoutToken => (
                StatusCode::FORBIDDEN,
                axum::Json(json!({
                    "error": "this route changes state and needs the admin token: set admin.token_file and send Authorization: Bearer <token>"
                })),
            )
                .into_response(),
            Refusal::BadToken => (
                StatusCode::UNAUTHORIZED,
                challenge("Bearer realm=\"shadowdiff\", error=\"invalid_token\""),
                axum::Json(json!({"error": "the bearer token is not this admin server's"})),
            )
                .into_response(),
        }
    }
}

/// The authorities a request names: its `Host` headers and its target's authority. `Err` with
/// the offending text when one does not parse.
fn authorities(req: &Request) -> Result<Vec<Authority>, String> {
    let mut out = Vec::new();
    for v in req.headers().get_all(header::HOST) {
        let s = v
            .to_str()
            .map_err(|_| String::from_utf8_lossy(v.as_bytes()).into_owned())?;
        out.push(Authority::parse(s).ok_or_else(|| s.to_string())?);
    }
    if let Some(a) = req.uri().authority() {
        out.push(Authority::parse(a.as_str()).ok_or_else(|| a.to_string())?);
    }
    Ok(out)
}

/// The middleware: the `Host` rule on every route, then the token on all but [`OPEN_ROUTES`].
pub async fn guard(State(access): State<Arc<AdminAccess>>, req: Request, next: Next) -> Response {
    let local = req
        .extensions()
        .get::<ConnectInfo<LocalAddr>>()
        .and_then(|c| c.0.0);
    let refused = match authorities(&req) {
        Ok(hs) => hs
            .iter()
            .find(|h| !access.host_allowed(h, local))
            .map(|h| h.to_string()),
        Err(raw) => Some(raw),
    };
    if let Some(bad) = refused {
        tracing::debug!(host = %bad, path = %req.uri().path(), "admin: Host refused");
        let r = Refusal::Host(bad);
        access.count(&r);
        return r.into_response();
    }
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if writes && !access.token_required() {
        tracing::debug!(path = %req.uri().path(), "admin: a write without a configured token");
        let r = Refusal::WriteWithoutToken;
        access.count(&r);
        return r.into_response();
    }
    if !OPEN_ROUTES.contains(&req.uri().path())
        && let Err(r) = access.authorized(req.headers())
    {
        tracing::debug!(path = %req.uri().path(), "admin: bearer token missing or wrong");
        access.count(&r);
        return r.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
