//! The exchange model: one request and the answers of primary, candidate and (optionally)
//! secondary. Sources build these; the comparator reads them; nothing here does I/O.

use bytes::Bytes;
use http::HeaderMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

/// The client's request as the primary received it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Path without the query string, as sent (not decoded).
    pub path: String,
    /// Query string without the `?`, if any.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream's answer as received (body still content-encoded, as on the wire).
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub latency: Duration,
}

/// Which upstream an answer or a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Primary,
    Candidate,
    Secondary,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Candidate => "candidate",
            Side::Secondary => "secondary",
        }
    }
}

/// Why a shadow side produced no answer. Data, not an `Err` of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("connection reset or closed: {0}")]
    Reset(String),
    /// The answer's body crossed the size cap: reading stopped there and the connection was
    /// closed.
    #[error("answer body over {0} bytes (shadow.max_body_bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    Other(String),
}

impl UpstreamError {
    /// Refused or reset, when an I/O error's kind says which; `None` for any other kind.
    pub fn from_io_kind(kind: std::io::ErrorKind, msg: String) -> Option<Self> {
        use std::io::ErrorKind::*;
        match kind {
            ConnectionRefused => Some(Self::Refused(msg)),
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                Some(Self::Reset(msg))
            }
            _ => None,
        }
    }
}

/// An answer, or why there was none.
pub type Outcome = Result<Response, UpstreamError>;

/// One complete exchange, ready for comparison.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Sortable unique id (ULID-like), assigned by the source.
    pub id: String,
    pub ts: SystemTime,
    /// `proxy`, `capture`, `replay` or `diff`.
    pub source: &'static str,
    /// Endpoint template (`GET /orders/{id}`), assigned by the source's grouping.
    pub endpoint: String,
    pub request: Request,
    pub primary: Response,
    pub candidate: Outcome,
    pub secondary: Option<Outcome>,
    /// When the shadow requests left, relative to the primary's; `None` when the source does
    /// not send (diff, capture of a past exchange).
    pub sends: Option<SendOffsets>,
}

/// When the candidate and secondary requests were sent, in µs after the primary request
/// (negative: before it). Noise cancellation assumes the three saw the same moment: a large
/// skew turns timing-dependent fields into differences the secondary cannot explain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendOffsets {
    pub candidate_us: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_us: Option<i64>,
    /// Time between the earliest and the latest of the three sends (the primary's included).
    pub skew_us: u64,
}

impl SendOffsets {
    /// From the send instants of the three requests.
    pub fn new(
        primary: std::time::Instant,
        candidate: std::time::Instant,
        secondary: Option<std::time::Instant>,
    ) -> Self {
        let off = |t: std::time::Instant| -> i64 {
            let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            if t >= primary {
                us(t - primary)
            } else {
                -us(primary - t)
            }
        };
        let candidate_us = off(candidate);
        let secondary_us = secondary.map(off);
        let all = [Some(0), Some(candidate_us), secondary_us];
        let hi = all.iter().flatten().max().copied().unwrap_or(0);
        let lo = all.iter().flatten().min().copied().unwrap_or(0);
        Self {
            candidate_us,
            secondary_us,
            skew_us: hi.abs_diff(lo),
        }
    }

    pub fn skew(&self) -> Duration {
        Duration::from_micros(self.skew_us)
    }
}

/// Why a body could not be decoded for comparison.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("decoded body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("corrupt {encoding} body: {reason}")]
    Corrupt { encoding: String, reason: String },
    #[error("unsupported content-encoding {0:?}")]
    Unsupported(String),
}

/// Decodes `body` according to the `Content-Encoding` header (gzip, x-gzip, deflate, br, identity,
/// and stacked encodings such as `gzip, br`), never producing more than `limit` bytes: a zip bomb
/// is refused once it crosses the cap, without inflating the rest.
pub fn decode_body(headers: &HeaderMap, body: &Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let encodings = content_codings(headers);
    if encodings.is_empty() {
        return Ok(body.clone());
    }
    let mut data = body.clone();
    // Encodings are listed in the order applied; undo them last to first.
    for enc in encodings.iter().rev() {
        data = decode_one(enc, &data, limit)?;
    }
    Ok(data)
}

/// The content codings of `Content-Encoding`, lower-cased, in the order they were applied
/// (`identity` left out).
pub fn content_codings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity")
        .collect()
}

fn decode_one(encoding: &str, data: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let corrupt = |e: std::io::Error| DecodeError::Corrupt {
        encoding: encoding.to_string(),
        reason: e.to_string(),
    };
    let reader: Box<dyn Read + '_> = match encoding {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(data)),
        // "deflate" is zlib-wrapped per RFC 9110, but some servers send raw deflate: sniff the header.
        "deflate" if looks_like_zlib(data) => Box::new(flate2::read::ZlibDecoder::new(data)),
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(data)),
        "br" => Box::new(brotli::Decompressor::new(data, 4096)),
        other => return Err(DecodeError::Unsupported(other.to_string())),
    };
    let mut out = Vec::new();
    // Read one byte past the cap so "exactly at the cap" and "over the cap" are told apart.
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

fn looks_like_zlib(data: &[u8]) -> bool {
    data.len() >= 2
        && data[0] & 0x0f == 8
        && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0
}

/// Lower-cased media type of a `Content-Type` header, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Whether a media type declares JSON (`application/json`, `application/problem+json`, ...).
pub fn is_json_media(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json") || media == "text/json"
}

/// A new sortable id: 48 bits of milliseconds then 80 random bits, Crockford base32 (ULID layout).
pub fn new_id(ts: SystemTime) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = ts
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let rand: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let mut v = (ms & ((1u128 << 48) - 1)) << 80 | rand;
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(enc: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_ENCODING, enc.parse().unwrap());
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_gzip_deflate_and_brotli() {
        let plain = br#"{"a":1}"#;
        let g = Bytes::from(gzip(plain));
        assert_eq!(decode_body(&headers("gzip"), &g, 1024).unwrap(), &plain[..]);

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(plain).unwrap();
        let z = Bytes::from(z.finish().unwrap());
        assert_eq!(
            decode_body(&headers("deflate"), &z, 1024).unwrap(),
            &plain[..]
        );

        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(plain).unwrap();
        let raw = Bytes::from(raw.finish().unwrap());
        assert_eq!(
            decode_body(&headers("deflate"), &raw, 1024).unwrap(),
            &plain[..]
        );

        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(plain)
            .unwrap();
        let br = Bytes::from(br);
        assert_eq!(decode_body(&headers("br"), &br, 1024).unwrap(), &plain[..]);
    }

    #[test]
    fn stacked_encodings_are_undone_in_reverse() {
        let plain = b"hello hello hello";
        let twice = Bytes::from(gzip(&gzip(plain)));
        assert_eq!(
            decode_body(&headers("gzip, gzip"), &twice, 1024).unwrap(),
            &plain[..]
        );
    }

    #[test]
    fn zip_bomb_is_refused_at_the_cap() {
        // 64 MiB of zeros compresses to ~64 KiB; the cap stops inflation at 1 MiB.
        let bomb = Bytes::from(gzip(&vec![0u8; 64 << 20]));
        assert!(bomb.len() < 200_000);
        let err = decode_body(&headers("gzip"), &bomb, 1 << 20).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { limit: 1 << 20 });
        // Exactly at the cap is fine.
        let exact = Bytes::from(gzip(&vec![7u8; 1000]));
        assert_eq!(
            decode_body(&headers("gzip"), &exact, 1000).unwrap().len(),
            1000
        );
    }

    #[test]
    fn corrupt_and_unknown_encodings_are_errors() {
        let junk = Bytes::from_static(b"not gzip at all");
        assert!(matches!(
            decode_body(&headers("gzip"), &junk, 1024),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_body(&headers("zstd"), &junk, 1024),
            Err(DecodeError::Unsupported(_))
        ));
        assert_eq!(
            decode_body(&headers("identity"), &junk, 1024).unwrap(),
            junk
        );
    }

    #[test]
    fn ids_are_sortable_and_unique() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let t1 = t0 + Duration::from_millis(1);
        let (a, b) = (new_id(t0), new_id(t1));
        assert_eq!(a.len(), 26);
        assert!(a < b);
        assert_ne!(new_id(t0), new_id(t0));
    }
}
