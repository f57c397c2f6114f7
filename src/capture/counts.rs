//! Completeness, counted: what happened to every packet and every exchange. Reported in
//! `/metrics` (`shadowdiff_capture_packets_total{outcome}`,
//! `shadowdiff_capture_exchanges_total{outcome,reason}`), the summary and `--summary-json`.

use crate::pipeline::metrics::MetricFamily;
use serde::Serialize;

/// Why an exchange is incomplete. A fixed set: the `reason` label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Incomplete {
    /// Bytes of the request or the response were never captured (lost segment, snaplen, an
    /// unfilled reorder hole).
    Gap,
    /// The request was captured; no response came before the connection ended or timed out.
    NoResponse,
    /// A response whose request was not captured (the capture began mid-connection, or the
    /// server answered more than it was asked).
    NoRequest,
    /// The connection closed, timed out or the capture ended in the middle of a message.
    Cut,
    /// A body larger than `max_body_bytes` (counted, not compared).
    BodyTooLarge,
    /// Dropped to keep memory within bounds (too many connections or bytes held).
    Evicted,
}

impl Incomplete {
    pub const ALL: [Incomplete; 6] = [
        Incomplete::Gap,
        Incomplete::NoResponse,
        Incomplete::NoRequest,
        Incomplete::Cut,
        Incomplete::BodyTooLarge,
        Incomplete::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Incomplete::Gap => "gap",
            Incomplete::NoResponse => "no_response",
            Incomplete::NoRequest => "no_request",
            Incomplete::Cut => "cut",
            Incomplete::BodyTooLarge => "body_too_large",
            Incomplete::Evicted => "evicted",
        }
    }
}

/// An exchange's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    Incomplete(Incomplete),
    /// The request or the response is not HTTP/1.x (or its framing is invalid).
    Unparsable,
}

/// Packet and exchange counts since the start of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub packets: PacketCounts,
    pub exchanges: ExchangeCounts,
}

/// What became of each packet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PacketCounts {
    /// Frames read (from the file, or delivered by the kernel).
    pub seen: u64,
    /// TCP segments of a connection on the server port.
    pub tcp: u64,
    /// Not for us: another port, not TCP, a link type we do not decode.
    pub ignored: u64,
    /// Headers that do not parse.
    pub malformed: u64,
    /// Cut by the snapshot length: their bytes become a gap.
    pub truncated: u64,
    /// IPv4 fragments (the reassembled datagram counts once more as `tcp`).
    pub fragments: u64,
    /// Segments that brought no new byte (retransmissions, duplicates).
    pub retransmitted: u64,
    /// The kernel's figures for a live capture (libpcap's `pcap_stats`).
    pub kernel_received: u64,
    pub kernel_dropped: u64,
    pub interface_dropped: u64,
}

/// What became of each exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExchangeCounts {
    pub complete: u64,
    /// Incomplete, by reason (every reason present, zeros included).
    pub incomplete: std::collections::BTreeMap<&'static str, u64>,
    pub unparsable: u64,
}

impl Default for ExchangeCounts {
    fn default() -> Self {
        Self {
            complete: 0,
            incomplete: Incomplete::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
            unparsable: 0,
        }
    }
}

impl ExchangeCounts {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Complete => self.complete += 1,
            Outcome::Unparsable => self.unparsable += 1,
            Outcome::Incomplete(r) => *self.incomplete.entry(r.as_str()).or_default() += 1,
        }
    }

    /// Incomplete exchanges, all reasons together.
    pub fn incomplete_total(&self) -> u64 {
        self.incomplete.values().sum()
    }

    pub fn incomplete(&self, r: Incomplete) -> u64 {
        self.incomplete.get(r.as_str()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.complete + self.unparsable + self.incomplete_total()
    }
}

impl Counts {
    /// The two metric families DESIGN.md names.
    pub fn metrics(&self) -> Vec<MetricFamily> {
        let p = &self.packets;
        let mut packets = MetricFamily::counter(
            "shadowdiff_capture_packets_total",
            "Captured packets by outcome (kernel_* from libpcap's statistics, live only).",
        );
        for (k, v) in [
            ("seen", p.seen),
            ("tcp", p.tcp),
            ("ignored", p.ignored),
            ("malformed", p.malformed),
            ("truncated", p.truncated),
            ("fragment", p.fragments),
            ("retransmitted", p.retransmitted),
            ("kernel_received", p.kernel_received),
            ("kernel_dropped", p.kernel_dropped),
            ("interface_dropped", p.interface_dropped),
        ] {
            packets = packets.with(&[("outcome", k)], v as f64);
        }
        let e = &self.exchanges;
        let mut ex = MetricFamily::counter(
            "shadowdiff_capture_exchanges_total",
            "Captured HTTP exchanges by outcome; incomplete ones by reason.",
        )
        .with(&[("outcome", "complete")], e.complete as f64)
        .with(&[("outcome", "unparsable")], e.unparsable as f64);
        for r in Incomplete::ALL {
            ex = ex.with(
                &[("outcome", "incomplete"), ("reason", r.as_str())],
                e.incomplete(r) as f64,
            );
        }
        vec![packets, ex]
    }

    /// The lines of the end-of-capture summary.
    pub fn render(&self) -> String {
        let p = &self.packets;
        let e = &self.exchanges;
        let mut s = format!(
            "capture completeness\n  packets: {} seen, {} tcp on the port, {} ignored, {} malformed, {} truncated, {} fragments, {} retransmitted\n",
            p.seen, p.tcp, p.ignored, p.malformed, p.truncated, p.fragments, p.retransmitted
        );
        if p.kernel_received > 0 || p.kernel_dropped > 0 {
            s += &format!(
                "  kernel: {} received, {} dropped, {} dropped by the interface\n",
                p.kernel_received, p.kernel_dropped, p.interface_dropped
            );
        }
        let total = e.total();
        let pct = |n: u64| {
            if total == 0 {
                0.0
            } else {
                100.0 * n as f64 / total as f64
            }
        };
        s += &format!(
            "  exchanges: {total} total, {} complete ({:.2}%), {} incomplete, {} unparsable\n",
            e.complete,
            pct(e.complete),
            e.incomplete_total(),
            e.unparsable
        );
        for (r, n) in e.incomplete.iter().filter(|(_, n)| **n > 0) {
            s += &format!("    incomplete {r}: {n}\n");
        }
        s
    }
}
