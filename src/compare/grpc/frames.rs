//! gRPC's length-prefixed messages (the gRPC over HTTP/2 protocol, "Length-Prefixed-Message"):
//! a compressed-flag byte, a 4-byte big-endian length, the message; compressed ones inflated as
//! `grpc-encoding` says, each under the comparator's decoded-size limit.

use bytes::Bytes;
use std::io::Read;

/// The messages of a body, inflated; an error says why the body is not a sequence of messages.
pub(super) fn split(
    body: &[u8],
    encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut total = 0usize;
    while !rest.is_empty() {
        let [flag, a, b, c, d, ..] = *rest else {
            return Err(format!("a frame prefix cut short ({} bytes)", rest.len()));
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        let Some(msg) = rest.get(5..5 + len) else {
            return Err(format!(
                "a message of {len} bytes cut short at {}",
                rest.len() - 5
            ));
        };
        rest = &rest[5 + len..];
        let msg = match flag {
            0 => Bytes::copy_from_slice(msg),
            1 => inflate(msg, encoding, limit.saturating_sub(total))?,
            f => return Err(format!("unknown frame flag {f:#04x}")),
        };
        total += msg.len();
        if total > limit {
            return Err(format!("messages over {limit} bytes"));
        }
        out.push(msg);
    }
    Ok(out)
}

/// One compressed message, at most `limit` bytes once inflated.
fn inflate(msg: &[u8], encoding: Option<&str>, limit: usize) -> Result<Bytes, String> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    let reader: Box<dyn Read + '_> = match enc.as_deref() {
        Some("gzip") => Box::new(flate2::read::GzDecoder::new(msg)),
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(msg)),
        Some(other) => return Err(format!("compressed with {other:?}, which is not decoded")),
        None => return Err("a compressed message without grpc-encoding".into()),
    };
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt {} message: {e}", enc.as_deref().unwrap_or("")))?;
    if out.len() > limit {
        return Err(format!(
            "messages over their limit once inflated ({limit} bytes left)"
        ));
    }
    Ok(Bytes::from(out))
}
