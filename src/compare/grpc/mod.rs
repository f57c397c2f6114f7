//! gRPC answers (`content-type: application/grpc`), compared message by message.
//!
//! A gRPC body is a sequence of length-prefixed messages (a flag byte, a 4-byte big-endian
//! length, the message: [`frames`]), each possibly compressed as `grpc-encoding` says. The
//! messages are decoded and compared with the JSON walk, so every rule kind works on them:
//!
//! - without a schema, like `protoc --decode_raw` ([`raw`]): an object keyed by field number,
//!   so a difference reads `/1/3` and `field` patterns name field numbers;
//! - with a descriptor set (`grpc: {descriptors: file.pb}`, [`Schema`]), the method's output
//!   message decoded to named fields (the proto3 JSON mapping, with the `.proto` field names and
//!   64-bit integers as numbers), compared like any JSON answer.
//!
//! A unary answer (one message on each side) is the message itself; a stream is an array of
//! messages (`/0/1`, `/2/items/0/price`). `grpc-status` and `grpc-message` (sent as trailers,
//! which the proxy compares with the headers) are compared as headers, and a candidate failing
//! with a server-side status (`UNKNOWN`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNAVAILABLE`,
//! `DATA_LOSS`) where the primary did not is a `candidate_error`, as a 5xx is.

mod frames;
mod raw;
mod schema;

pub use schema::Schema;

use super::BodyDiff;
use super::rules::Effective;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// `grpc:` — how gRPC messages are decoded for comparison.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// A `FileDescriptorSet` (`protoc --include_imports --descriptor_set_out=file.pb`, `buf
    /// build -o file.pb`), relative to the config file; read at start. With it, messages of the
    /// services it describes compare by field name; without it (or for other services),
    /// schema-less by field number. Default none.
    pub descriptors: Option<PathBuf>,
    /// The descriptor set, once read (by the config's loader: the comparator does no I/O).
    #[serde(skip)]
    pub schema: Option<Arc<Schema>>,
}

/// Whether an answer is gRPC (`application/grpc`, `application/grpc+proto`, with parameters);
/// gRPC-Web and `+json` frame or encode differently and are compared as any body.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/grpc")
        || media.eq_ignore_ascii_case("application/grpc+proto")
}

/// gRPC status codes that say the server failed, not the request (the 5xx of gRPC).
const SERVER_FAILURES: &[&str] = &["2", "4", "13", "14", "15"];

/// A note when the candidate failed server-side where the primary did not: the exchange is then
/// a `candidate_error`.
pub fn server_failure(p: &HeaderMap, c: &HeaderMap) -> Option<String> {
    let status = |h: &HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_string)
    };
    let (ps, cs) = (status(p), status(c));
    let failed = |s: &Option<String>| s.as_deref().is_some_and(|s| SERVER_FAILURES.contains(&s));
    (failed(&cs) && !failed(&ps)).then(|| {
        format!(
            "candidate answered grpc-status {} where the primary answered {}",
            cs.as_deref().unwrap_or(""),
            ps.as_deref().unwrap_or("none")
        )
    })
}

/// Both answers decoded and walked; `Err` (with why) when either body is not gRPC-framed
/// messages, for the caller to compare it as bytes instead.
pub(super) fn diff(
    eff: &Effective,
    schema: Option<&Schema>,
    path: &str,
    sides: [(&HeaderMap, &[u8]); 2],
    limit: usize,
    max_differences: usize,
) -> Result<BodyDiff, String> {
    let mut notes = Vec::new();
    let message = schema.and_then(|s| s.output(path));
    if schema.is_some() && message.is_none() {
        notes.push(format!(
            "no descriptor for the method {path}; messages decoded schema-less"
        ));
    }
    let mut roots = Vec::with_capacity(2);
    for ((headers, body), side) in sides.into_iter().zip(["primary", "candidate"]) {
        let encoding = headers.get("grpc-encoding").and_then(|v| v.to_str().ok());
        let msgs = frames::split(body, encoding, limit).map_err(|e| format!("{side} body: {e}"))?;
        let mut values = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let v = match (&message, schema) {
                (Some(desc), Some(s)) => s.decode(desc, m),
                _ => raw::decode(m).ok_or_else(|| "not a protobuf message".to_string()),
            };
            values.push(v.map_err(|e| format!("{side} message {i}: {e}"))?);
        }
        roots.push(values);
    }
    let (mut p, mut c) = (roots.swap_remove(0), roots.swap_remove(0));
    let (pv, cv) = if p.len() == 1 && c.len() == 1 {
        (p.swap_remove(0), c.swap_remove(0))
    } else {
        (Value::Array(p), Value::Array(c))
    };
    // Decoded messages are compared by the same tape walk as JSON bodies: every rule kind works
    // on them, and numbers keep their exact text.
    let (pb, cb) = (
        serde_json::to_vec(&pv).map_err(|e| format!("primary message: {e}"))?,
        serde_json::to_vec(&cv).map_err(|e| format!("candidate message: {e}"))?,
    );
    let (mut ps, mut cs) = (Vec::new(), Vec::new());
    let pt = super::scan::scan(&pb, &mut ps).map_err(|e| format!("primary message: {e}"))?;
    let ct = super::scan::scan(&cb, &mut cs).map_err(|e| format!("candidate message: {e}"))?;
    let (differences, truncated) = super::scan::diff(eff, &pt, &ct, max_differences);
    Ok(BodyDiff {
        differences,
        notes,
        truncated,
    })
}

#[cfg(test)]
mod tests;
