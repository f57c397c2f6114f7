//! What a request must be before the proxy forwards it (RFC 9112 §3.2, RFC 9110 §9.3.6,
//! RFC 9113 §8.3.1), and the one Host the primary and the shadows see.
//!
//! Why a sidecar checks at all: the primary trusts that whatever reaches it came through a
//! conforming intermediary. Forwarding two `Host` lines lets the primary and a cache or router
//! in front of it pick different ones (a routing/poisoning primitive); forwarding `Host: b` for
//! `GET http://a/x` sends the request to the wrong virtual host; forwarding `CONNECT` turns the
//! sidecar into a tunnel to wherever the primary can reach.

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::Authority;
use http::{Method, Version};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was answered by the proxy itself instead of being forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `CONNECT` asks for a tunnel; the sidecar forwards requests to one origin, never tunnels.
    #[error("CONNECT is not forwarded")]
    Connect,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2: a server must answer 400).
    #[error("an HTTP/1.1 request needs a Host header")]
    MissingHost,
    /// More than one `Host` line (RFC 9112 §3.2: 400).
    #[error("more than one Host header")]
    MultipleHosts,
    /// A `Host` that is not `uri-host [":" port]`.
    #[error("invalid Host header")]
    InvalidHost,
}

impl Refused {
    pub const ALL: [Refused; 4] = [
        Self::Connect,
        Self::MissingHost,
        Self::MultipleHosts,
        Self::InvalidHost,
    ];

    /// The `reason` label of `shadowdiff_requests_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::MissingHost => "missing_host",
            Self::MultipleHosts => "multiple_hosts",
            Self::InvalidHost => "invalid_host",
        }
    }

    pub fn status(self) -> http::StatusCode {
        match self {
            Self::Connect => http::StatusCode::METHOD_NOT_ALLOWED,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Requests refused, by reason.
#[derive(Debug, Default)]
pub struct RefusedCounts([AtomicU64; Refused::ALL.len()]);

impl RefusedCounts {
    pub fn add(&self, r: Refused) {
        self.0[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, r: Refused) -> u64 {
        self.0[r.index()].load(Ordering::Relaxed)
    }
}

/// Methods a 405 names in `Allow` (RFC 9110 §15.5.6 requires the field): everything the
/// sidecar forwards that a client could mean instead of `CONNECT`.
pub const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE";

/// Checks the request line and `Host`, and leaves exactly one `Host` in `head`: the
/// request-target's authority when it has one (absolute-form in HTTP/1.1, `:authority` in
/// HTTP/2), else the client's own `Host`.
pub fn settle_host(head: &mut Parts) -> Result<(), Refused> {
    if head.method == Method::CONNECT {
        return Err(Refused::Connect);
    }
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(Refused::MultipleHosts);
    }
    if let Some(v) = first
        && !valid_host(v)
    {
        return Err(Refused::InvalidHost);
    }
    if first.is_none() && head.version == Version::HTTP_11 {
        return Err(Refused::MissingHost);
    }
    // The target's authority wins over Host (RFC 9112 §3.2.2); userinfo is never part of Host.
    if let Some(a) = head.uri.authority() {
        let host = match a.port() {
            Some(p) => format!("{}:{}", a.host(), p.as_str()),
            None => a.host().to_string(),
        };
        let v = HeaderValue::from_str(&host).map_err(|_| Refused::InvalidHost)?;
        head.headers.insert(header::HOST, v);
    }
    Ok(())
}

/// `Host = uri-host [ ":" port ]`; empty is allowed (RFC 9112 §3.2: a target without an
/// authority is sent with an empty Host).
fn valid_host(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    if b.is_empty() {
        return true;
    }
    if b.contains(&b'@') {
        return false; // userinfo is not part of Host
    }
    let Some(Ok(a)) = std::str::from_utf8(b).ok().map(str::parse::<Authority>) else {
        return false;
    };
    // `http` accepts any text after the host's colon; a port is digits (RFC 3986 §3.2.3), and
    // one that does not fit 16 bits names no port at all.
    let rest = &a.as_str()[a.host().len()..];
    let port_ok = match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some("") => true,
        Some(p) => p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok(),
    };
    !a.host().is_empty() && port_ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::Request;

    fn parts(method: &str, uri: &str, version: Version, hosts: &[&str]) -> Parts {
        let mut b = Request::builder().method(method).uri(uri).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn hosts(p: &Parts) -> Vec<&str> {
        p.headers
            .get_all(header::HOST)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn the_absolute_form_authority_wins_over_host_without_its_userinfo() {
        let mut p = parts(
            "GET",
            "http://a.example/x",
            Version::HTTP_11,
            &["b.example"],
        );
        settle_host(&mut p).unwrap();
        assert_eq!(hosts(&p), ["a.example"]);
        let mut p = parts(
            "GET",
            "http://user:pw@a.example:8080/x",
            Version::HTTP_11,
            &["b"],
        );
        settle_host(&mut p).unwrap();
        assert_eq!(hosts(&p), ["a.example:8080"]);
    }

    #[test]
    fn origin_form_keeps_the_one_host() {
        let mut p = parts("GET", "/x", Version::HTTP_11, &["orders:8080"]);
        settle_host(&mut p).unwrap();
        assert_eq!(hosts(&p), ["orders:8080"]);
        let mut p = parts("GET", "/x", Version::HTTP_11, &[""]);
        settle_host(&mut p).unwrap();
        assert_eq!(hosts(&p), [""]);
    }

    #[test]
    fn zero_or_several_hosts_are_refused_in_http_1_1() {
        let mut p = parts("GET", "/x", Version::HTTP_11, &[]);
        assert_eq!(settle_host(&mut p), Err(Refused::MissingHost));
        let mut p = parts("GET", "/x", Version::HTTP_11, &["a", "b"]);
        assert_eq!(settle_host(&mut p), Err(Refused::MultipleHosts));
        let mut p = parts("GET", "/x", Version::HTTP_11, &["a", "a"]);
        assert_eq!(settle_host(&mut p), Err(Refused::MultipleHosts));
        // Even absolute-form needs its Host line in HTTP/1.1.
        let mut p = parts("GET", "http://a/x", Version::HTTP_11, &[]);
        assert_eq!(settle_host(&mut p), Err(Refused::MissingHost));
        // HTTP/1.0 had no Host; HTTP/2 carries `:authority`.
        let mut p = parts("GET", "/x", Version::HTTP_10, &[]);
        assert_eq!(settle_host(&mut p), Ok(()));
        let mut p = parts("GET", "http://a/x", Version::HTTP_2, &[]);
        settle_host(&mut p).unwrap();
        assert_eq!(hosts(&p), ["a"]);
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for h in [
            "a b", "a/b", "u@a", "a:99x", ":80", "a:80:80", "a:99999", "a:-1",
        ] {
            let mut p = parts("GET", "/x", Version::HTTP_11, &[h]);
            assert_eq!(settle_host(&mut p), Err(Refused::InvalidHost), "{h}");
        }
        for h in [
            "a",
            "a:80",
            "[::1]:8080",
            "10.0.0.1",
            "xn--bcher-kva.example",
        ] {
            let mut p = parts("GET", "/x", Version::HTTP_11, &[h]);
            assert_eq!(settle_host(&mut p), Ok(()), "{h}");
        }
    }

    #[test]
    fn connect_is_refused_with_405() {
        let mut p = parts(
            "CONNECT",
            "a.example:443",
            Version::HTTP_11,
            &["a.example:443"],
        );
        assert_eq!(settle_host(&mut p), Err(Refused::Connect));
        assert_eq!(Refused::Connect.status(), 405);
    }
}
