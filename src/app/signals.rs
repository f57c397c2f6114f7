//! Signals: the shutdown signal (SIGTERM, SIGINT) and SIGHUP for the reloader, installed
//! before anything starts.

use std::future::Future;

/// The proxy's and the aggregator's shutdown signal: resolves when SIGTERM or SIGINT arrives.
/// SIGHUP is caught and logged; nothing reloads on it (see [`signals`] for what does).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    signals().0
}

/// The shutdown signal (SIGTERM or SIGINT), and one message per SIGHUP for the reloader
/// ([`super::reload::ReloadSource::hangups`]).
///
/// SIGHUP never stops the process (its default action would kill it, exit 129, without
/// draining): it is caught, forwarded and logged; with the receiver dropped it is only logged.
/// The handlers are installed when this is called, not when the future is first polled, so call
/// it inside the runtime, before starting anything: a signal that arrives while the sidecar
/// starts must not meet the default action.
pub fn signals() -> (
    impl Future<Output = ()> + Send + 'static,
    crossbeam_channel::Receiver<()>,
) {
    // One pending reload covers any number of SIGHUPs sent before it runs.
    let (hup_tx, hup_rx) = crossbeam_channel::bounded::<()>(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let watch = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(signal = name, error = %e, "cannot watch this signal");
                None
            }
        };
        async fn recv(s: &mut Option<Signal>) -> Option<()> {
            match s {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        }
        let mut term = watch(SignalKind::terminate(), "SIGTERM");
        let mut int = watch(SignalKind::interrupt(), "SIGINT");
        let mut hup = watch(SignalKind::hangup(), "SIGHUP");
        let fut = async move {
            loop {
                tokio::select! {
                    Some(()) = recv(&mut term) => {
                        tracing::info!(signal = "SIGTERM", "shutdown requested");
                        return;
                    }
                    Some(()) = recv(&mut int) => {
                        tracing::info!(signal = "SIGINT", "shutdown requested");
                        return;
                    }
                    Some(()) = recv(&mut hup) => match hup_tx.try_send(()) {
                        Err(crossbeam_channel::TrySendError::Disconnected(())) => tracing::info!(
                            signal = "SIGHUP",
                            "received: nothing reloads in this command; the process keeps serving"
                        ),
                        // Full: a reload is pending and will read the files after this signal.
                        _ => tracing::info!(signal = "SIGHUP", "received: reloading the rules and the config"),
                    },
                    else => std::future::pending::<()>().await,
                }
            }
        };
        (fut, hup_rx)
    }
    #[cfg(not(unix))]
    {
        drop(hup_tx);
        let fut = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        (fut, hup_rx)
    }
}
