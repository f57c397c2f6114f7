//! The descriptor budget, computed once at start from `RLIMIT_NOFILE`.
//!
//! Every client connection is a descriptor, and while its request is forwarded a second one to
//! the primary (hyper's pool keeps at most one per concurrent request); shadows hold up to
//! `shadow.max_in_flight` connections to the candidate and as many to the secondary (their pool
//! is bounded by it); the rest of the process (standard streams, the two listeners, the event
//! file and its rotation, the Kafka client and spool, admin connections, the runtime's own) is
//! covered by a fixed reserve. A process that runs out accepts nothing and forwards nothing, so
//! the budget is checked before the first connection:
//!
//! 1. the soft limit is raised to the hard limit (what a careful server does; systemd's default
//!    soft limit is 1024 whatever `LimitNOFILE` allows);
//! 2. needed = reserve + shadow connections + 2 × (`max_connections` + 1) (the `+ 1` is the
//!    connection held while it waits for a slot);
//! 3. when the limit is lower, a warning gives the numbers and the client-connection cap is
//!    lowered to what fits: (limit − reserve − shadow connections) / 2 − 1, but never below a
//!    quarter of (limit − reserve): clients come first, and shadows that then find no descriptor
//!    fail as candidate errors instead.

use super::super::config::LimitsConfig;

/// Descriptors kept for everything that is not a client, primary or shadow connection.
pub const RESERVE: u64 = 128;

/// The outcome of the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` in force (after raising it); `None` when unknown or unlimited.
    pub limit: Option<u64>,
    /// Descriptors the configured caps need.
    pub needed: u64,
    /// Of which shadow connections (candidate and secondary).
    pub shadows: u64,
    /// The client-connection cap to enforce: `max_connections`, or lower when it does not fit.
    pub clients: usize,
}

/// Connections shadows may hold: `max_in_flight` to the candidate, as many to the secondary.
pub fn shadow_connections(max_in_flight: usize, secondary: bool) -> u64 {
    max_in_flight as u64 * (1 + u64::from(secondary))
}

/// The budget for a descriptor `limit` (pure: the rule of the module docs).
pub fn plan(limit: Option<u64>, max_connections: usize, shadows: u64) -> Budget {
    let clients_max = max_connections as u64;
    let needed = RESERVE
        .saturating_add(shadows)
        .saturating_add(clients_max.saturating_add(1).saturating_mul(2));
    let clients = match limit {
        Some(l) if l < needed => {
            let avail = l.saturating_sub(RESERVE);
            let fair = (avail.saturating_sub(shadows) / 2).saturating_sub(1);
            fair.max(avail / 4).clamp(1, clients_max.max(1))
        }
        _ => clients_max,
    };
    Budget {
        limit,
        needed,
        shadows,
        clients: usize::try_from(clients).unwrap_or(max_connections),
    }
}

/// Raises the soft descriptor limit to the hard one, computes the budget and logs it (a warning
/// with the numbers when the caps do not fit).
pub fn at_start(limits: &LimitsConfig, shadows: u64) -> Budget {
    let b = plan(raise_nofile(), limits.max_connections, shadows);
    match b.limit {
        Some(limit) if b.clients < limits.max_connections => tracing::warn!(
            nofile = limit,
            needed = b.needed,
            max_connections = limits.max_connections,
            shadow_connections = b.shadows,
            reserve = RESERVE,
            client_connections = b.clients,
            "the descriptor limit (RLIMIT_NOFILE, systemd LimitNOFILE) is too low for the configured caps; client connections are capped lower"
        ),
        limit => tracing::info!(
            nofile = ?limit,
            needed = b.needed,
            client_connections = b.clients,
            "descriptor budget"
        ),
    }
    b
}

/// The soft `RLIMIT_NOFILE` after raising it to the hard limit.
#[cfg(target_os = "linux")]
fn raise_nofile() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (now.current, now.maximum)
        && soft < hard
    {
        let raised = Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the descriptor limit");
                return Some(hard);
            }
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the descriptor limit"),
        }
    }
    now.current
}

#[cfg(not(target_os = "linux"))]
fn raise_nofile() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_limit_keeps_the_configured_cap() {
        let b = plan(Some(1 << 20), 10_000, 1024);
        assert_eq!(b.clients, 10_000);
        assert_eq!(b.needed, RESERVE + 1024 + 2 * 10_001);
        assert_eq!(plan(None, 10_000, 1024).clients, 10_000);
    }

    #[test]
    fn a_low_limit_shrinks_the_cap_to_what_fits() {
        // systemd's default soft limit with the default caps.
        let b = plan(Some(1024), 10_000, 1024);
        // (1024 - 128 - 1024) / 2 is nothing: clients get a quarter of what is left.
        assert_eq!(b.clients, (1024 - 128) / 4);
        // With fewer shadows, the fair share wins.
        let b = plan(Some(1024), 10_000, 64);
        assert_eq!(b.clients, (1024 - 128 - 64) / 2 - 1);
        let total = RESERVE + 64 + 2 * (b.clients as u64 + 1);
        assert!(total <= 1024, "{total}");
    }

    #[test]
    fn the_cap_is_never_zero_nor_raised() {
        assert_eq!(plan(Some(10), 10_000, 1024).clients, 1);
        assert_eq!(plan(Some(300), 5, 0).clients, 5);
    }
}
