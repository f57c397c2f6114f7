//! A small client of the admin API, for `shadowdiff gate`. Plain HTTP only: the admin listener is
//! loopback (or a private network) by design, and no TLS stack is worth pulling in for it.
//!
//! The request's `Host` is the URL's authority (hyper sets it), so the server's `Host` rule
//! passes for `http://127.0.0.1:PORT`, `http://localhost:PORT`, the listen address, or a name in
//! the server's `admin.allowed_hosts`. With a token ([`token_from`]), it goes in
//! `Authorization: Bearer`.

use super::config::{AdminConfigError, AdminToken, read_token_file};
use crate::stats::GateReport;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::Duration;

/// The environment variable `shadowdiff gate` reads the admin token from when no
/// `--token-file` is given.
pub const TOKEN_ENV: &str = "SHADOWDIFF_ADMIN_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid admin URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not a gate report: {reason}")]
    BadAnswer { url: String, reason: String },
    #[error("{url} answered {status}: {reason}")]
    Refused {
        url: String,
        status: u16,
        reason: &'static str,
    },
    #[error(transparent)]
    Token(#[from] AdminConfigError),
    #[error("{TOKEN_ENV}: the token {0}")]
    TokenEnv(super::config::TokenError),
}

/// The admin token to send: `--token-file` when given, else `SHADOWDIFF_ADMIN_TOKEN` when set
/// (`env` is its value), else none.
pub fn token_from(
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<AdminToken>, ClientError> {
    match (file, env) {
        (Some(f), _) => Ok(Some(read_token_file(f)?)),
        (None, Some(v)) => AdminToken::new(v).map(Some).map_err(ClientError::TokenEnv),
        (None, None) => Ok(None),
    }
}

/// What to ask the gate; `None` leaves the server's default.
#[derive(Debug, Clone, Default)]
pub struct GateQuery {
    pub max_divergence: Option<String>,
    pub min_samples: Option<u64>,
    /// `pass` or `both`.
    pub min_samples_for: Option<String>,
    /// `sequential` or `wilson`.
    pub method: Option<String>,
    pub endpoint: Option<String>,
    pub window: Option<String>,
}

/// Everything but RFC 3986's unreserved characters is encoded in a query value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// The full `/api/v1/gate` URL for an admin base URL (with or without a trailing slash).
pub fn gate_url(base: &str, q: &GateQuery) -> Result<String, ClientError> {
    let base = base.trim().trim_end_matches('/');
    let url_err = |reason: &str| ClientError::Url {
        url: base.to_string(),
        reason: reason.to_string(),
    };
    if base.starts_with("https://") {
        return Err(url_err(
            "https is not supported; the admin API is plain HTTP on a loopback or private address",
        ));
    }
    if !base.starts_with("http://") {
        return Err(url_err("write it as http://HOST:PORT"));
    }
    let mut params = Vec::new();
    if let Some(v) = &q.max_divergence {
        params.push(format!("max_divergence={}", encode(v)));
    }
    if let Some(v) = q.min_samples {
        params.push(format!("min_samples={v}"));
    }
    if let Some(v) = &q.min_samples_for {
        params.push(format!("min_samples_for={}", encode(v)));
    }
    if let Some(v) = &q.method {
        params.push(format!("method={}", encode(v)));
    }
    if let Some(v) = &q.endpoint {
        params.push(format!("endpoint={}", encode(v)));
    }
    if let Some(v) = &q.window {
        params.push(format!("window={}", encode(v)));
    }
    let mut url = format!("{base}/api/v1/gate");
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url.parse::<http::Uri>()
        .map_err(|e| url_err(&e.to_string()))?;
    Ok(url)
}

/// Fetches and parses a gate report, with the bearer token when one is given.
pub async fn fetch_gate(
    base: &str,
    q: &GateQuery,
    token: Option<&AdminToken>,
    timeout: Duration,
) -> Result<GateReport, ClientError> {
    let url = gate_url(base, q)?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let mut req = http::Request::get(uri);
    if let Some(t) = token {
        req = req.header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", t.expose()),
        );
    }
    // The token was checked to be visible ASCII, so the header cannot fail to build.
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let fetch = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok::<_, ClientError>((status, body))
    };
    let (status, body) =
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                timeout,
            })??;
    let refused = match status.as_u16() {
        401 if token.is_none() => Some(
            "the admin API wants a bearer token: give --token-file FILE or set SHADOWDIFF_ADMIN_TOKEN",
        ),
        401 => {
            Some("the admin API refused the token (compare it with the server's admin.token_file)")
        }
        421 => Some(
            "the admin API does not answer to this host name (DNS rebinding protection): use its \
             address or localhost, or add the name to the server's admin.allowed_hosts",
        ),
        _ => None,
    };
    if let Some(reason) = refused {
        return Err(ClientError::Refused {
            url,
            status: status.as_u16(),
            reason,
        });
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        // The API's errors are `{"error": ..., "parameter": ...}`: show the message alone.
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(300).collect());
        return Err(ClientError::Status {
            url,
            status: status.as_u16(),
            body: msg,
        });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer {
        url,
        reason: e.to_string(),
    })
}

/// hyper-util's errors hide the cause (connection refused, DNS) one or two `source`s down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let q = GateQuery {
            endpoint: Some("GET /orders/{id}".into()),
            window: Some("1h".into()),
            ..Default::default()
        };
        assert_eq!(
            gate_url("http://127.0.0.1:9901/", &q).unwrap(),
            "http://127.0.0.1:9901/api/v1/gate?endpoint=GET%20%2Forders%2F%7Bid%7D&window=1h"
        );
        assert!(gate_url("https://x", &q).is_err());
        assert!(gate_url("127.0.0.1:9901", &q).is_err());
    }

    #[test]
    fn the_token_comes_from_the_file_before_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "from-the-file-0123456789\n").unwrap();
        let t = token_from(Some(&f), Some("from-the-environment-0123")).unwrap();
        assert_eq!(t.unwrap().expose(), "from-the-file-0123456789");
        let t = token_from(None, Some(" from-the-environment-0123 ")).unwrap();
        assert_eq!(t.unwrap().expose(), "from-the-environment-0123");
        assert_eq!(token_from(None, None).unwrap(), None);
        let e = token_from(None, Some("")).unwrap_err().to_string();
        assert!(
            e.contains("SHADOWDIFF_ADMIN_TOKEN") && e.contains("empty"),
            "{e}"
        );
        let e = token_from(Some(&dir.path().join("absent")), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
