//! What the inbound side counts, and the metric families it reports (DESIGN.md, "Metrics"):
//! `shadowdiff_connections{state}`, `shadowdiff_connections_closed_total{reason}` and the rest.

use crate::pipeline::metrics::{MetricFamily, MetricKind};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Where a client connection stands; the label of `shadowdiff_connections{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for (or reading) a request head: a new connection, or a kept-alive one whose
    /// next head has begun to arrive. `limits.header_read_timeout` runs.
    Head,
    /// Kept alive between requests, nothing received yet (HTTP/2: no stream open).
    /// `limits.idle_timeout` runs.
    Idle,
    /// At least one request in progress: from its complete head until its answer is written.
    Active,
}

impl State {
    pub const ALL: [State; 3] = [State::Head, State::Idle, State::Active];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Head => "head",
            State::Idle => "idle",
            State::Active => "active",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a client connection was closed; the label of `shadowdiff_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it, or asked to (`Connection: close`), or went away (reset).
    Client,
    /// No complete head within `limits.header_read_timeout`.
    HeaderTimeout,
    /// Kept alive with no request for `limits.idle_timeout`.
    Idle,
    /// Idle, and closed early to make room: `max_connections` reached or descriptors exhausted
    /// while a new connection waited.
    Limit,
    /// A head over `limits.max_header_bytes` (or over 100 header lines): answered `431`.
    HeadTooLarge,
    /// A head hyper could not parse: answered `400`.
    BadRequest,
    /// The proxy is shutting down (drained, or closed at the grace deadline).
    Shutdown,
    /// Any other I/O or protocol error.
    Error,
}

impl Closed {
    pub const ALL: [Closed; 8] = [
        Closed::Client,
        Closed::HeaderTimeout,
        Closed::Idle,
        Closed::Limit,
        Closed::HeadTooLarge,
        Closed::BadRequest,
        Closed::Shutdown,
        Closed::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Client => "client",
            Closed::HeaderTimeout => "header_timeout",
            Closed::Idle => "idle",
            Closed::Limit => "limit",
            Closed::HeadTooLarge => "head_too_large",
            Closed::BadRequest => "bad_request",
            Closed::Shutdown => "shutdown",
            Closed::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Kinds of failed `accept()`; the label of `shadowdiff_accept_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// EMFILE/ENFILE: out of file descriptors (process or system). Backed off.
    Descriptors,
    /// ENOBUFS/ENOMEM: the kernel is short of memory. Backed off.
    Memory,
    /// The client gave up before the connection was accepted. Not backed off.
    Aborted,
    /// Anything else. Backed off.
    Other,
}

impl AcceptError {
    pub const ALL: [AcceptError; 4] = [
        AcceptError::Descriptors,
        AcceptError::Memory,
        AcceptError::Aborted,
        AcceptError::Other,
    ];

    pub fn of(e: &std::io::Error) -> AcceptError {
        // errno values are the same on every Linux architecture (and on the BSDs for these).
        const ENFILE: i32 = 23;
        const EMFILE: i32 = 24;
        const ENOMEM: i32 = 12;
        const ENOBUFS: i32 = 105;
        match (e.raw_os_error(), e.kind()) {
            (Some(EMFILE | ENFILE), _) => AcceptError::Descriptors,
            (Some(ENOMEM | ENOBUFS), _) | (_, std::io::ErrorKind::OutOfMemory) => {
                AcceptError::Memory
            }
            (
                _,
                std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::Interrupted,
            ) => AcceptError::Aborted,
            _ => AcceptError::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AcceptError::Descriptors => "descriptors",
            AcceptError::Memory => "memory",
            AcceptError::Aborted => "aborted",
            AcceptError::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The inbound side's counters; read by `/metrics` through [`crate::ingest::Counters`].
#[derive(Debug, Default)]
pub struct InboundStats {
    accepted: AtomicU64,
    waited: AtomicU64,
    max_connections: AtomicU64,
    states: [AtomicI64; State::ALL.len()],
    closed: [AtomicU64; Closed::ALL.len()],
    accept_errors: [AtomicU64; AcceptError::ALL.len()],
}

impl InboundStats {
    /// Connections open now in this state.
    pub fn connections(&self, s: State) -> i64 {
        self.states[s.index()].load(Ordering::Relaxed)
    }

    /// Connections closed for this reason so far.
    pub fn closed(&self, r: Closed) -> u64 {
        self.closed[r.index()].load(Ordering::Relaxed)
    }

    /// Failed accepts of this kind so far.
    pub fn accept_errors(&self, k: AcceptError) -> u64 {
        self.accept_errors[k.index()].load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// New connections that had to wait for a slot (`max_connections` reached).
    pub fn waited(&self) -> u64 {
        self.waited.load(Ordering::Relaxed)
    }

    /// The client-connection cap in force (after the descriptor budget).
    pub fn max_connections(&self) -> u64 {
        self.max_connections.load(Ordering::Relaxed)
    }

    pub(super) fn set_max_connections(&self, n: usize) {
        self.max_connections.store(n as u64, Ordering::Relaxed);
    }

    pub(super) fn opened(&self, s: State) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.states[s.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn moved(&self, from: State, to: State) {
        if from != to {
            self.states[from.index()].fetch_sub(1, Ordering::Relaxed);
            self.states[to.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn close(&self, last: State, why: Closed) {
        self.states[last.index()].fetch_sub(1, Ordering::Relaxed);
        self.closed[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn accept_error(&self, k: AcceptError) {
        self.accept_errors[k.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn waited_for_slot(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
    }

    /// The families `/metrics` shows.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut conns = MetricFamily {
            name: "shadowdiff_connections".into(),
            help: "Client connections open, by state: head (waiting for or reading a request head), idle (kept alive, nothing received), active (a request in progress)".into(),
            kind: MetricKind::Gauge,
            samples: Vec::new(),
        };
        for s in State::ALL {
            conns = conns.with(&[("state", s.as_str())], self.connections(s) as f64);
        }
        let mut closed = MetricFamily::counter(
            "shadowdiff_connections_closed_total",
            "Client connections closed, by reason",
        );
        for r in Closed::ALL {
            closed = closed.with(&[("reason", r.as_str())], self.closed(r) as f64);
        }
        let mut errors = MetricFamily::counter(
            "shadowdiff_accept_errors_total",
            "Failed accepts of client connections, by kind (descriptors, memory and other are backed off)",
        );
        for k in AcceptError::ALL {
            errors = errors.with(&[("kind", k.as_str())], self.accept_errors(k) as f64);
        }
        vec![
            conns,
            closed,
            errors,
            MetricFamily::counter(
                "shadowdiff_connections_accepted_total",
                "Client connections accepted",
            )
            .with(&[], self.accepted() as f64),
            MetricFamily::counter(
                "shadowdiff_connections_waited_total",
                "New client connections that waited for a slot because limits.max_connections were open",
            )
            .with(&[], self.waited() as f64),
            MetricFamily::gauge(
                "shadowdiff_connections_max",
                "Client connections served at once: limits.max_connections, lowered when the descriptor limit cannot hold it",
                self.max_connections() as f64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_classified_by_errno() {
        let of = |n| AcceptError::of(&std::io::Error::from_raw_os_error(n));
        assert_eq!(of(24), AcceptError::Descriptors);
        assert_eq!(of(23), AcceptError::Descriptors);
        assert_eq!(of(105), AcceptError::Memory);
        assert_eq!(of(103), AcceptError::Aborted); // ECONNABORTED
        assert_eq!(of(22), AcceptError::Other);
    }

    #[test]
    fn states_move_and_closing_counts_the_reason() {
        let s = InboundStats::default();
        s.opened(State::Head);
        s.moved(State::Head, State::Active);
        s.moved(State::Active, State::Idle);
        assert_eq!(s.connections(State::Idle), 1);
        assert_eq!(s.connections(State::Head), 0);
        s.close(State::Idle, Closed::Idle);
        assert_eq!(s.connections(State::Idle), 0);
        assert_eq!(s.closed(Closed::Idle), 1);
        let f = s.families();
        assert_eq!(f[0].samples.len(), 3);
        assert_eq!(f[1].samples.len(), Closed::ALL.len());
    }
}
