//! The candidate's circuit breaker: shadows stop going to a candidate that keeps failing, and
//! one probe at a time finds out when it is back.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// The candidate's circuit breaker: after `failures` consecutive failures (transport error,
/// timeout or 5xx) it opens for `cooldown`, during which exchanges are skipped as
/// `circuit_open`; then one probe goes through (half-open): success closes it, failure opens
/// it for another cool-down.
#[derive(Debug)]
pub struct Circuit {
    failures: u32,
    cooldown: Duration,
    state: Mutex<CircuitInner>,
}

#[derive(Debug, Default)]
struct CircuitInner {
    consecutive: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// What [`Circuit::state`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    /// The cool-down is over: the next shadow is a probe (or one is in flight).
    HalfOpen,
}

impl Circuit {
    /// `failures == 0` disables the breaker.
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self {
            failures,
            cooldown,
            state: Mutex::new(CircuitInner::default()),
        }
    }

    pub fn state(&self) -> CircuitState {
        let s = self.state.lock();
        match s.open_until {
            None => CircuitState::Closed,
            Some(t) if Instant::now() < t => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// `Some(probe)` when a shadow may go (`probe` true for the half-open trial), `None` when open.
    pub(super) fn admit(&self) -> Option<bool> {
        if self.failures == 0 {
            return Some(false);
        }
        let mut s = self.state.lock();
        match s.open_until {
            None => Some(false),
            Some(t) if Instant::now() < t => None,
            Some(_) if s.probing => None,
            Some(_) => {
                s.probing = true;
                Some(true)
            }
        }
    }

    pub(super) fn release_probe(&self) {
        self.state.lock().probing = false;
    }

    pub(super) fn record(&self, ok: bool, probe: bool) {
        if self.failures == 0 {
            return;
        }
        let mut s = self.state.lock();
        if ok {
            // A success admitted before the circuit opened says nothing about now; only the
            // probe closes an open circuit.
            if probe || s.open_until.is_none() {
                s.consecutive = 0;
                if probe {
                    tracing::info!(side = "candidate", "circuit closed: probe succeeded");
                }
                s.open_until = None;
                s.probing = false;
            }
            return;
        }
        s.consecutive = s.consecutive.saturating_add(1);
        if probe {
            s.probing = false;
            s.open_until = Some(Instant::now() + self.cooldown);
            tracing::warn!(side = "candidate", cooldown = ?self.cooldown, "circuit re-opened: probe failed");
        } else if s.open_until.is_none() && s.consecutive >= self.failures {
            s.open_until = Some(Instant::now() + self.cooldown);
            tracing::warn!(side = "candidate", failures = s.consecutive, cooldown = ?self.cooldown, "circuit opened");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_opens_probes_and_closes() {
        let c = Circuit::new(2, Duration::from_millis(0));
        assert_eq!(c.admit(), Some(false));
        c.record(false, false);
        assert_eq!(c.state(), CircuitState::Closed);
        c.record(false, false);
        // Zero cool-down: immediately half-open, one probe at a time.
        assert_eq!(c.state(), CircuitState::HalfOpen);
        assert_eq!(c.admit(), Some(true));
        assert_eq!(c.admit(), None);
        c.record(false, true);
        assert_eq!(c.admit(), Some(true));
        c.record(true, true);
        assert_eq!(c.state(), CircuitState::Closed);
        assert_eq!(c.admit(), Some(false));
    }

    #[test]
    fn open_circuit_refuses_during_cooldown() {
        let c = Circuit::new(1, Duration::from_secs(3600));
        c.record(false, false);
        assert_eq!(c.state(), CircuitState::Open);
        assert_eq!(c.admit(), None);
        // A late success from before the opening does not close it.
        c.record(true, false);
        assert_eq!(c.state(), CircuitState::Open);
    }
}
