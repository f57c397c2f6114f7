//! A small client of the admin API, for `shadowdiff gate`. Plain HTTP only: the admin listener is
//! loopback (or a private network) by design, and no TLS stack is worth pulling in for it.

use crate::stats::GateReport;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

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
}

/// What to ask the gate; `None` leaves the server's default.
#[derive(Debug, Clone, Default)]
pub struct GateQuery {
    pub max_divergence: Option<String>,
    pub min_samples: Option<u64>,
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

/// Fetches and parses a gate report.
pub async fn fetch_gate(
    base: &str,
    q: &GateQuery,
    timeout: Duration,
) -> Result<GateReport, ClientError> {
    let url = gate_url(base, q)?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let fetch = async {
        let resp = client
            .get(uri)
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
}
