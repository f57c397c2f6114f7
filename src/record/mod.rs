//! Recordings, `shadowdiff.recording.v1` (DESIGN.md, "Recording format"): one exchange per JSON
//! line — the request and the primary's answer — so a recording can be replayed against any
//! later candidate build (`shadowdiff replay --traffic`). What `capture --record` and the
//! proxy's `record:` section write and what `replay` reads. Nothing here does network I/O.
//!
//! - [`Recording`]: the line's form, and its conversion from and to the exchange model.
//! - [`Body`]: a body as UTF-8 text, or `{"base64": "..."}` when it is not valid UTF-8 —
//!   decoded from its transfer coding (chunked) but not its content coding: a gzip body stays
//!   gzip, with its `content-encoding` header, so a replay compares what the wire carried.
//! - [`RecordRedaction`]: recordings are redacted as events are (`redact:`), except that
//!   nothing is capped and a body with nothing to hide is kept byte for byte.
//! - [`reader`]: reads a recording line by line, each bad line reported with its number.
//! - [`writer`]: the `record:` section and the [`writer::Recorder`] the proxy samples live
//!   exchanges into — off the request path, bounded, rotated, every drop counted.

pub mod reader;
pub mod writer;

#[cfg(test)]
mod tests;

use crate::exchange::{self, Request, Response};
use crate::redact::{RecordedBody, RedactConfig, Redaction};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::time::{Duration, SystemTime};

pub const SCHEMA: &str = "shadowdiff.recording.v1";

/// One recorded exchange (one line of a recording).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub schema: String,
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    /// `capture` or `proxy`.
    pub source: String,
    pub request: RecordedRequest,
    pub primary: RecordedResponse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query string, as sent (not decoded).
    pub path: String,
    /// Query string without the `?`.
    #[serde(default)]
    pub query: Option<String>,
    /// `[name, value]` pairs in wire order, duplicates kept.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: Option<Body>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    #[serde(default)]
    pub latency_us: u64,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: Option<Body>,
}

/// A body: UTF-8 text as a JSON string, anything else as `{"base64": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body {
    Text(String),
    Base64 { base64: String },
}

impl Body {
    /// `None` for an empty body.
    pub fn from_bytes(b: &[u8]) -> Option<Body> {
        if b.is_empty() {
            return None;
        }
        Some(match std::str::from_utf8(b) {
            Ok(s) => Body::Text(s.to_string()),
            Err(_) => Body::Base64 {
                base64: B64.encode(b),
            },
        })
    }

    pub fn to_bytes(&self) -> Result<Bytes, RecordError> {
        match self {
            Body::Text(s) => Ok(Bytes::from(s.clone())),
            Body::Base64 { base64 } => B64
                .decode(base64)
                .map(Bytes::from)
                .map_err(|e| RecordError::Invalid(format!("body: invalid base64: {e}"))),
        }
    }
}

/// Why a line is not a usable recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("schema {0:?} is not {SCHEMA}")]
    Schema(String),
    #[error("{0}")]
    Invalid(String),
}

impl Recording {
    /// The recording of one exchange: a request and the primary's answer as received.
    pub fn new(ts: SystemTime, source: &str, request: &Request, primary: &Response) -> Recording {
        Recording {
            schema: SCHEMA.to_string(),
            id: exchange::new_id(ts),
            ts: crate::event::format_ts(ts),
            source: source.to_string(),
            request: RecordedRequest {
                method: request.method.clone(),
                path: request.path.clone(),
                query: request.query.clone(),
                headers: pairs(&request.headers),
                body: Body::from_bytes(&request.body),
            },
            primary: RecordedResponse {
                status: primary.status,
                latency_us: u64::try_from(primary.latency.as_micros()).unwrap_or(u64::MAX),
                headers: pairs(&primary.headers),
                body: Body::from_bytes(&primary.body),
            },
        }
    }

    /// Parses one line.
    pub fn from_json(line: &str) -> Result<Recording, RecordError> {
        #[derive(Deserialize)]
        struct Schema {
            schema: Option<String>,
        }
        let r: Recording = serde_json::from_str(line).map_err(|e| {
            // Another schema's line (an event file given by mistake) says so.
            match serde_json::from_str::<Schema>(line) {
                Ok(Schema { schema: Some(s) }) if s != SCHEMA => RecordError::Schema(s),
                _ => RecordError::Json(e.to_string()),
            }
        })?;
        if r.schema != SCHEMA {
            return Err(RecordError::Schema(r.schema));
        }
        Ok(r)
    }

    /// One JSON line, without its newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"schema\":\"{SCHEMA}\",\"error\":\"{e}\"}}"))
    }

    /// When it was recorded (`UNIX_EPOCH` when the line's `ts` does not parse).
    pub fn time(&self) -> SystemTime {
        humantime::parse_rfc3339_weak(&self.ts).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The request and the primary's answer in the exchange model.
    pub fn to_exchange_parts(&self) -> Result<(Request, Response), RecordError> {
        let q = &self.request;
        if http::Method::from_bytes(q.method.as_bytes()).is_err() {
            return Err(RecordError::Invalid(format!(
                "request.method {:?} is not a method",
                q.method
            )));
        }
        let body = |b: &Option<Body>| b.as_ref().map_or(Ok(Bytes::new()), Body::to_bytes);
        let request = Request {
            method: q.method.clone(),
            path: if q.path.is_empty() {
                "/".into()
            } else {
                q.path.clone()
            },
            query: q.query.clone(),
            headers: header_map(&q.headers, "request")?,
            body: body(&q.body)?,
        };
        let p = &self.primary;
        let primary = Response {
            status: p.status,
            headers: header_map(&p.headers, "primary")?,
            body: body(&p.body)?,
            latency: Duration::from_micros(p.latency_us),
        };
        Ok((request, primary))
    }
}

/// Header pairs in the map's order (a name's values in the order received); a value that is not
/// UTF-8 (obs-text) is kept with its invalid bytes replaced.
fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn header_map(pairs: &[(String, String)], side: &str) -> Result<HeaderMap, RecordError> {
    let mut h = HeaderMap::with_capacity(pairs.len());
    for (n, v) in pairs {
        let name = HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| RecordError::Invalid(format!("{side}.headers: invalid name {n:?}")))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            RecordError::Invalid(format!("{side}.headers: invalid value for {n:?}"))
        })?;
        h.append(name, value);
    }
    Ok(h)
}

/// How recordings are redacted: as events are (`redact:`), but whole (no size cap) and
/// faithful — a body with nothing to hide keeps its bytes, one with something to hide is masked
/// after undoing its content coding and encoded again the same way.
#[derive(Debug, Clone)]
pub struct RecordRedaction {
    r: Redaction,
    /// Most bytes a body is decoded to for redaction; a larger one is withheld.
    decode_limit: usize,
}

impl RecordRedaction {
    pub fn new(cfg: &RedactConfig, decode_limit: usize) -> Self {
        Self {
            r: Redaction::from_config(cfg, usize::MAX),
            decode_limit,
        }
    }

    /// The recording with every hidden value masked.
    pub fn apply(&self, rec: &mut Recording) {
        let r = &self.r;
        let q = &mut rec.request;
        q.path = r.text(&q.path);
        q.query = q.query.as_deref().map(|s| r.query(s));
        self.side(&mut q.headers, &mut q.body);
        let p = &mut rec.primary;
        self.side(&mut p.headers, &mut p.body);
    }

    fn side(&self, headers: &mut [(String, String)], body: &mut Option<Body>) {
        // The body's coding is read from the headers as recorded, before they are masked.
        if let Some(b) = body.as_ref()
            && let Ok(raw) = b.to_bytes()
        {
            let map = header_map(headers, "").unwrap_or_default();
            let out = match self.r.recorded_body(&map, &raw, self.decode_limit) {
                RecordedBody::Unchanged => None,
                RecordedBody::AsSent(b) => Some(b),
                RecordedBody::Decoded(b) => Some(encode(&map, &b)),
                RecordedBody::TooLarge => Some(
                    format!("<{} bytes, too large to record redacted>", raw.len()).into_bytes(),
                ),
            };
            if let Some(b) = out {
                *body = Body::from_bytes(&b);
            }
        }
        for (n, v) in headers.iter_mut() {
            *v = self.r.header_value(n, v);
        }
    }
}

/// Encodes `data` with the content codings the headers name, in the order they were applied;
/// a coding we cannot produce leaves the data as it is at that step.
fn encode(headers: &HeaderMap, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for c in &exchange::content_codings(headers) {
        let level = flate2::Compression::default();
        let done = match c.as_str() {
            "gzip" | "x-gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(&out).and_then(|()| e.finish())
            }
            "deflate" => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(&out).and_then(|()| e.finish())
            }
            "br" => {
                let mut v = Vec::new();
                let r = {
                    let mut w = brotli::CompressorWriter::new(&mut v, 4096, 5, 22);
                    w.write_all(&out).and_then(|()| w.flush())
                };
                r.map(|()| v)
            }
            _ => continue,
        };
        if let Ok(v) = done {
            out = v;
        }
    }
    out
}
