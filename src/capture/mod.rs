//! `shadowdiff capture`: the passive source. Packets in (live or from a pcap/pcapng file),
//! HTTP/1.x exchanges of one server port out, with every loss counted.
//!
//! - [`packet`]: link layers and IP (etherparse), IPv4 fragments reassembled, bounded.
//! - [`tcp`]: one direction's reassembly — our own, pure and fuzzed (`fuzz/fuzz_targets/capture.rs`).
//! - [`http`]: HTTP/1.x messages read incrementally from a reassembled direction (httparse).
//! - `conn`: one connection — both directions, requests and responses paired in order.
//! - [`tracker`]: the connection table — idle timeouts, memory bounds, the completeness
//!   [`Counts`]. Pure: `(timestamp, link type, frame)` in, [`Finished`] exchanges out.
//! - [`source`]: the only I/O — libpcap (the `pcap` crate) for files and interfaces, the
//!   kernel's received/dropped counters, and [`source::run`], which drives a tracker.
//! - [`write`]: a minimal pcap writer, for crafted captures in tests and `sample-traffic/`.
//! - [`fuzzing`]: the fuzz property (reassembly + HTTP), shared by the fuzz target and its replay.
//!
//! A [`CapturedExchange`] is the plain hand-off to whatever consumes captured traffic (the
//! replay engine compares it with a candidate's answer, the recorder writes it).

pub mod counts;
pub mod fuzzing;
pub mod http;
pub mod packet;
pub mod source;
pub mod tcp;
pub mod tracker;
pub mod write;

mod conn;

pub use counts::{Counts, Incomplete, Outcome};
pub use tracker::{Limits, Tracker};

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A request as captured: method, path and query as sent, header fields in wire order
/// (duplicates kept, names lower-cased), the body after transfer decoding (content coding kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedRequest {
    pub method: String,
    /// Path without the query string, as sent (not decoded).
    pub path: String,
    /// Query string without the `?`, if any.
    pub query: Option<String>,
    /// Minor HTTP version: 0 or 1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The primary's answer as captured (final status; 1xx interim answers are not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Capture timestamps (µs since the Unix epoch) of the first and last byte of each message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureTimes {
    pub request_first_us: i64,
    pub request_last_us: i64,
    pub response_first_us: i64,
    pub response_last_us: i64,
}

/// One reassembled exchange between a client and the server port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedExchange {
    /// Connection number within this capture (1, 2, ...), stable for its exchanges.
    pub connection: u64,
    /// Position of the exchange on its connection (0, 1, ...).
    pub index: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub request: CapturedRequest,
    pub response: CapturedResponse,
    pub times: CaptureTimes,
}

impl CapturedExchange {
    /// The primary's latency as the capture saw it: from the request's first byte to the
    /// response's last byte on the wire (what the proxy measures around its primary call).
    pub fn primary_latency(&self) -> Duration {
        let us = self
            .times
            .response_last_us
            .saturating_sub(self.times.request_first_us);
        Duration::from_micros(u64::try_from(us).unwrap_or(0))
    }

    /// When the request started, as a wall-clock time.
    pub fn ts(&self) -> SystemTime {
        let us = u64::try_from(self.times.request_first_us).unwrap_or(0);
        UNIX_EPOCH + Duration::from_micros(us)
    }

    /// The request in the pipeline's model (header fields that are not valid HTTP are dropped).
    pub fn to_request(&self) -> crate::exchange::Request {
        crate::exchange::Request {
            method: self.request.method.clone(),
            path: self.request.path.clone(),
            query: self.request.query.clone(),
            headers: header_map(&self.request.headers),
            body: bytes::Bytes::from(self.request.body.clone()),
        }
    }

    /// The captured primary answer in the pipeline's model.
    pub fn to_primary(&self) -> crate::exchange::Response {
        crate::exchange::Response {
            status: self.response.status,
            headers: header_map(&self.response.headers),
            body: bytes::Bytes::from(self.response.body.clone()),
            latency: self.primary_latency(),
        }
    }
}

fn header_map(fields: &[(String, Vec<u8>)]) -> ::http::HeaderMap {
    let mut m = ::http::HeaderMap::with_capacity(fields.len());
    for (n, v) in fields {
        if let (Ok(n), Ok(v)) = (
            ::http::HeaderName::from_bytes(n.as_bytes()),
            ::http::HeaderValue::from_bytes(v),
        ) {
            m.append(n, v);
        }
    }
    m
}

/// An exchange's fate: counted always, with the exchange itself when complete.
#[derive(Debug, Clone)]
pub struct Finished {
    pub outcome: Outcome,
    /// Present when `outcome` is `Complete`.
    pub exchange: Option<CapturedExchange>,
    /// `METHOD target` of the request when it was read (for logs and tests).
    pub request_line: Option<String>,
    pub connection: u64,
}
