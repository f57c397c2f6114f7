//! The client side of the proxy (`limits:`): accepting connections, serving each with hyper, and
//! the limits that keep a hostile or careless client from hurting everyone else.
//!
//! - **Head timeout** (`header_read_timeout`, from the accept, or from the first byte of a
//!   kept-alive connection's next head) and **idle timeout** (`idle_timeout`, a kept-alive
//!   connection with no request) are one per-connection deadline ([`conn`]). hyper has a
//!   header-read timer, but it starts as soon as a connection goes idle
//!   (`proto/h1/conn.rs`: `notify_read` after a response, then `poll_read_head` arms it), so it
//!   is one timeout for both waits and an idle keep-alive connection would be closed after
//!   `header_read_timeout`; it also does not run while hyper-util's `auto` builder is still
//!   telling HTTP/1 from HTTP/2, so a connection that sends nothing is never timed. It is
//!   therefore off, and the deadline is ours: closed with no answer on a late head, cleanly
//!   (HTTP/2: GOAWAY) when idle.
//! - **Head size** (`max_header_bytes`) is hyper's: `max_buf_size` for HTTP/1, which answers
//!   `431` and closes; `max_header_list_size` for HTTP/2, which answers `431` on the stream.
//! - **Connections** (`max_connections`, lowered by the descriptor budget, [`budget`]): a slot per
//!   connection; with none free, the connection just accepted waits for one and nothing more is
//!   accepted (the kernel's backlog holds the rest), and idle kept-alive connections are closed
//!   to make room (`limit`).
//! - **Accept errors** (EMFILE and the like) back off, 5 ms doubling to 500 ms, instead of
//!   retrying a listener that stays readable (a spinning core); running out of descriptors also
//!   asks idle connections to close. Each is counted; the log says so at most every 10 s.
//! - HTTP/2 clients get hyper's keep-alive PINGs every `header_read_timeout`, unanswered for as
//!   long closes the connection (a peer that vanished with streams open).

pub mod budget;
mod conn;
pub mod stats;

use super::config::LimitsConfig;
use bytes::Bytes;
use conn::Shared;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
pub use stats::{AcceptError, Closed, InboundStats, State};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First and longest pause after a failed accept.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// At most one log line per this period for each repeated condition.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// hyper's connection builder under `limits`.
fn builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Ours instead (module docs): hyper's would also close idle keep-alive connections.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(super::config::MIN_HEADER_BYTES));
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Accepts and serves client connections with `handler` until `shutdown` completes; then stops
/// accepting, lets the connections finish what they are doing until `grace` has passed, closes
/// the rest, and returns the deadline it used (what is left of it is the caller's).
pub async fn serve<H, F, B>(
    listener: TcpListener,
    limits: LimitsConfig,
    stats: Arc<InboundStats>,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Instant
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cap = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let cap = u32::try_from(cap).unwrap_or(u32::MAX);
    stats.set_max_connections(cap as usize);
    let slots = Arc::new(Semaphore::new(cap as usize));
    let (waiting, waiting_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        builder: builder(&limits),
        limits,
        stats: stats.clone(),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
        waiting: waiting_rx,
    });
    let mut backoff = BACKOFF_FIRST;
    let mut errors_log = Every::new();
    let mut full_log = Every::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                let kind = AcceptError::of(&e);
                stats.accept_error(kind);
                if let Some(suppressed) = errors_log.due() {
                    tracing::warn!(error = %e, kind = kind.as_str(), suppressed, "accept failed; backing off (shadowdiff_accept_errors_total)");
                }
                if kind == AcceptError::Aborted {
                    continue;
                }
                if kind == AcceptError::Descriptors {
                    // Out of descriptors: idle kept-alive connections give theirs back.
                    waiting.send_replace(true);
                }
                // The listener stays readable while the error lasts: retrying at once spins.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_FIRST;
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => {
                waiting.send_if_modified(|w| std::mem::replace(w, false));
                s
            }
            Err(_) => {
                stats.waited_for_slot();
                if let Some(suppressed) = full_log.due() {
                    tracing::warn!(
                        max_connections = cap,
                        suppressed,
                        "limits.max_connections reached: new connections wait (shadowdiff_connections_waited_total)"
                    );
                }
                waiting.send_replace(true);
                let s = tokio::select! {
                    s = slots.clone().acquire_owned() => s,
                    () = &mut shutdown => break,
                };
                waiting.send_replace(false);
                match s {
                    Ok(s) => s,
                    Err(_) => break, // closed: never happens, nothing closes it
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(conn::serve(
            shared.clone(),
            stream,
            peer,
            handler.clone(),
            slot,
        ));
    }
    drop(listener);
    let deadline = Instant::now() + grace;
    tracing::info!(grace = ?grace, "shutting down: no new connections; finishing in-flight requests");
    shared.stop.cancel();
    // Every connection holds a slot: all slots back means every connection is closed.
    if tokio::time::timeout_at(deadline, slots.acquire_many(cap))
        .await
        .is_err()
    {
        tracing::warn!("client connections still open at the shutdown deadline; closing them");
        shared.abort.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(cap)).await;
    }
    deadline
}

/// Lets a repeated log line through at most once per [`LOG_EVERY`], counting what it held back.
struct Every {
    last: Option<Instant>,
    suppressed: u64,
}

impl Every {
    fn new() -> Every {
        Every {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    fn due(&mut self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now < t + LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_log_lines_are_held_back_and_counted() {
        let t = Instant::now();
        let mut e = Every::new();
        assert_eq!(e.due_at(t), Some(0));
        assert_eq!(e.due_at(t), None);
        assert_eq!(e.due_at(t + LOG_EVERY / 2), None);
        assert_eq!(e.due_at(t + LOG_EVERY), Some(2));
        assert_eq!(e.due_at(t + LOG_EVERY), None);
    }
}
