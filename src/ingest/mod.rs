//! Sources of exchanges. Each source turns traffic into [`crate::exchange::Exchange`]s and hands
//! them to the comparison workers; what they share lives here.
//!
//! - [`proxy`]: the inline sidecar's request path (`shadowdiff proxy`).
//! - [`inbound`]: its client side — accepting and serving connections under `limits:` (head and
//!   idle timeouts, connection cap, head size, accept back-off, the descriptor budget).
//! - [`recorded`]: recorded or captured pairs (a request and the primary's answer seen
//!   elsewhere) shadowed under the same policy and compared with the recorded answer
//!   (`replay`, `capture --candidate`).
//! - `admission`: the shadow policy's yes or no, shared by the proxy and [`recorded`].
//! - `shadow`: the proxy's background shadow task (candidate, secondary, hand-off to comparison).
//! - [`circuit`]: the candidate's circuit breaker.
//! - [`grouping`]: endpoint names for exchanges.
//! - [`background`]: the shadow I/O thread, at a lower priority than forwarding.
//! - [`body`]: a body wrapper that keeps a bounded copy of what streams through it.
//! - [`buffer`]: buffers whose allocations are reserved in the shadow memory budget first.
//! - [`overload`]: shedding shadows while the I/O threads are saturated.
//! - [`shadow_client`]: the lean HTTP/1.1 client shadows go out on.
//! - [`shadow_h2`]: shadows to an `h2` upstream, multiplexed on one HTTP/2 connection.
//! - [`resolve`]: upstream name lookups, cached and one at a time.
//! - [`rewrite`]: a shadow copy's path prefix and regex rewrites (`shadow.candidate`,
//!   `shadow.secondary`).
//! - [`semantics`]: requests refused before forwarding (CONNECT, Host), and the one Host sent.
//! - [`tls`]: TLS to `https://` upstreams (the `tls:` section), for the shadow client and the
//!   primary's connector.

mod admission;
pub mod background;
pub mod body;
pub mod buffer;
pub mod circuit;
pub mod config;
pub mod grouping;
pub mod inbound;
pub mod overload;
pub mod proxy;
pub mod recorded;
pub mod resolve;
pub mod rewrite;
pub mod semantics;
mod shadow;
pub mod shadow_client;
pub mod shadow_h2;
pub mod tls;

use crate::compare::SkipReason;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters a source keeps; read by tests and by `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client requests received.
    pub requests: AtomicU64,
    /// Shadow requests in flight now (candidate and secondary of one exchange count once).
    pub shadows_in_flight: AtomicI64,
    /// Highest `shadows_in_flight` seen.
    pub shadows_in_flight_peak: AtomicI64,
    /// Shadow exchanges started.
    pub shadows_started: AtomicU64,
    /// Exchanges handed to the comparison workers.
    pub compared: AtomicU64,
    /// Shadows abandoned at the shutdown deadline.
    pub shadows_abandoned: AtomicU64,
    /// The shadow memory budget (`shadow.max_buffered_bytes`) and what is held against it.
    pub buffered: std::sync::Arc<crate::pipeline::budget::Budget>,
    /// Shadow admission under saturation (`shadow.overload`), written by its controller.
    pub overload: std::sync::Arc<overload::Overload>,
    /// Requests answered by the proxy itself (400/405), by reason; never forwarded.
    pub refused: semantics::RefusedCounts,
    /// Client connections: by state, closed by reason, accept errors (`limits:`).
    pub inbound: std::sync::Arc<inbound::InboundStats>,
    skipped: [AtomicU64; SkipReason::ALL.len()],
}

impl Counters {
    pub fn skip(&self, r: SkipReason) {
        self.skipped[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Exchanges skipped for this reason so far.
    pub fn skipped(&self, r: SkipReason) -> u64 {
        self.skipped[r.index()].load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> i64 {
        self.shadows_in_flight.load(Ordering::Relaxed)
    }

    pub fn in_flight_peak(&self) -> i64 {
        self.shadows_in_flight_peak.load(Ordering::Relaxed)
    }

    pub(crate) fn shadow_started(&self) {
        self.shadows_started.fetch_add(1, Ordering::Relaxed);
        let now = self.shadows_in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.shadows_in_flight_peak.fetch_max(now, Ordering::AcqRel);
    }

    pub(crate) fn shadow_finished(&self) {
        self.shadows_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Name of the in-flight gauge the proxy reports (DESIGN.md, "Metrics").
pub const SHADOW_IN_FLIGHT: &str = "shadowdiff_shadow_in_flight";

impl crate::pipeline::metrics::MetricsSource for Counters {
    fn collect(&self) -> Vec<crate::pipeline::metrics::MetricFamily> {
        use crate::pipeline::metrics::MetricFamily;
        let mut families = self.inbound.families();
        families.extend([
            MetricFamily::gauge(
                SHADOW_IN_FLIGHT,
                "Shadow requests in flight",
                self.shadows_in_flight.load(Ordering::Relaxed) as f64,
            ),
            MetricFamily::gauge(
                "shadowdiff_shadow_admit_ratio",
                "Fraction of eligible requests shadowed now: below 1 while the I/O threads are saturated (shadow.overload)",
                self.overload.admit_ratio(),
            ),
            MetricFamily::gauge(
                "shadowdiff_io_busy_ratio",
                "Busy share of the proxy's I/O threads over the last 100 ms, of the cores the process may use",
                self.overload.busy_ratio(),
            ),
            semantics::Refused::ALL.iter().fold(
                MetricFamily::counter(
                    "shadowdiff_requests_refused_total",
                    "Client requests answered by the proxy itself and never forwarded (CONNECT: 405; missing, repeated or invalid Host: 400), by reason",
                ),
                |f, r| f.with(&[("reason", r.as_str())], self.refused.get(*r) as f64),
            ),
            MetricFamily::gauge(
                "shadowdiff_shadow_buffered_bytes",
                "Bytes held by shadows (copies and answers awaiting comparison), against shadow.max_buffered_bytes",
                self.buffered.used() as f64,
            ),
        ]);
        families
    }
}
