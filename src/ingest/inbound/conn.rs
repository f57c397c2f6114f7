//! One client connection: where it stands ([`State`]), the deadline that follows from it, and
//! the task that serves it with hyper and closes it when the deadline passes.
//!
//! The state moves on three events, none of which costs more than an atomic load on the hot
//! path: a request's head is complete (hyper calls the service: `active`), its answer is done
//! (the response body is dropped: `idle` once no other request is in progress), and bytes arrive
//! on an idle HTTP/1 connection (the next head has begun: `head`). The first bytes of a
//! connection also tell HTTP/2 (the preface) from HTTP/1, as hyper's own detection does: an
//! HTTP/2 connection without a stream is `idle` whatever frames (PINGs, SETTINGS) it exchanges.

use super::super::config::LimitsConfig;
use super::stats::{Closed, InboundStats, State};
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What every connection shares: the limits, the counters, hyper's builder and the signals of
/// the accept loop.
pub(super) struct Shared {
    pub limits: LimitsConfig,
    pub stats: Arc<InboundStats>,
    pub builder: auto::Builder<TokioExecutor>,
    /// Shutdown began: finish what is in flight, take no new request.
    pub stop: CancellationToken,
    /// The grace period is over: close now.
    pub abort: CancellationToken,
    /// A new connection waits for a slot (or descriptors ran out): idle connections make room.
    pub waiting: watch::Receiver<bool>,
}

/// How long an idle connection asked to close may take to do so (an HTTP/2 GOAWAY exchange).
const CLOSE_IDLE_WITHIN: Duration = Duration::from_secs(1);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// This many bytes of the HTTP/2 preface seen so far, nothing else.
    Unknown(usize),
    H1,
    H2,
}

struct Clock {
    state: State,
    since: Instant,
    in_flight: u32,
    proto: Proto,
}

/// One connection's state, shared by its task, its socket wrapper and its requests.
struct Conn {
    clock: Mutex<Clock>,
    /// Set while a read may move the state (protocol unknown, or an HTTP/1 connection idle), so
    /// that other reads cost one atomic load.
    watch_reads: AtomicBool,
    /// Wakes the connection's task when its deadline may have changed.
    changed: Notify,
    stats: Arc<InboundStats>,
}

impl Conn {
    fn new(stats: Arc<InboundStats>) -> Conn {
        stats.opened(State::Head);
        Conn {
            clock: Mutex::new(Clock {
                state: State::Head,
                since: Instant::now(),
                in_flight: 0,
                proto: Proto::Unknown(0),
            }),
            watch_reads: AtomicBool::new(true),
            changed: Notify::new(),
            stats,
        }
    }

    fn enter(&self, c: &mut Clock, to: State) {
        self.stats.moved(c.state, to);
        c.state = to;
        c.since = Instant::now();
        self.changed.notify_one();
    }

    fn on_read(&self, bytes: &[u8]) {
        if bytes.is_empty() || !self.watch_reads.load(Ordering::Relaxed) {
            return;
        }
        let mut c = self.clock.lock();
        match c.proto {
            Proto::Unknown(seen) => {
                let rest = &H2_PREFACE[seen..];
                let n = bytes.len().min(rest.len());
                if bytes[..n] != rest[..n] {
                    // HTTP/1: the head being read is the first one, timed since the accept.
                    c.proto = Proto::H1;
                    self.watch_reads.store(false, Ordering::Relaxed);
                } else if seen + n == H2_PREFACE.len() {
                    // HTTP/2: connected; requests come as streams, idle until the first.
                    c.proto = Proto::H2;
                    self.watch_reads.store(false, Ordering::Relaxed);
                    if c.in_flight == 0 {
                        self.enter(&mut c, State::Idle);
                    }
                } else {
                    c.proto = Proto::Unknown(seen + n);
                }
            }
            Proto::H1 if c.state == State::Idle => {
                self.watch_reads.store(false, Ordering::Relaxed);
                self.enter(&mut c, State::Head);
            }
            Proto::H1 | Proto::H2 => {}
        }
    }

    fn begin(&self) {
        let mut c = self.clock.lock();
        c.in_flight += 1;
        self.watch_reads.store(false, Ordering::Relaxed);
        if c.state != State::Active {
            self.enter(&mut c, State::Active);
        }
    }

    fn end(&self) {
        let mut c = self.clock.lock();
        c.in_flight = c.in_flight.saturating_sub(1);
        if c.in_flight == 0 {
            self.watch_reads
                .store(c.proto == Proto::H1, Ordering::Relaxed);
            self.enter(&mut c, State::Idle);
        }
    }

    /// When the current state runs out, and what closing then is called.
    fn deadline(&self, limits: &LimitsConfig) -> Option<(Instant, Closed)> {
        let c = self.clock.lock();
        match c.state {
            State::Head => Some((c.since + limits.header_read_timeout, Closed::HeaderTimeout)),
            State::Idle => Some((c.since + limits.idle_timeout, Closed::Idle)),
            State::Active => None,
        }
    }

    /// Why the connection must close now, if it must: its deadline passed, or it is idle while
    /// a new connection waits for room.
    fn due(&self, limits: &LimitsConfig, someone_waits: bool) -> Option<Closed> {
        if someone_waits && self.clock.lock().state == State::Idle {
            return Some(Closed::Limit);
        }
        self.deadline(limits)
            .filter(|(at, _)| *at <= Instant::now())
            .map(|(_, why)| why)
    }

    fn finish(&self, why: Closed) {
        let last = self.clock.lock().state;
        self.stats.close(last, why);
    }
}

/// Serves one accepted connection until it ends or a limit closes it; `slot` is its place under
/// `max_connections`, given back when the task ends.
pub(super) async fn serve<H, F, B>(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    slot: OwnedSemaphorePermit,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _slot = slot;
    let conn = Arc::new(Conn::new(shared.stats.clone()));
    let io = TokioIo::new(Watched {
        stream,
        conn: conn.clone(),
    });
    let requests = conn.clone();
    let svc = service_fn(move |req| {
        let busy = Busy::begin(requests.clone());
        let answer = handler(req);
        async move {
            let resp = answer.await?;
            Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let http = shared.builder.serve_connection(io, svc);
    tokio::pin!(http);
    let limits = &shared.limits;
    let mut waiting = shared.waiting.clone();
    let mut waiting_open = true;
    let mut draining = false;
    let why = loop {
        let someone_waits = waiting_open && *waiting.borrow_and_update();
        match conn.due(limits, someone_waits) {
            // A head that is late is an attacker or a broken client: no answer, no grace.
            Some(Closed::HeaderTimeout) => break Closed::HeaderTimeout,
            // Nothing is in flight: let hyper close cleanly (HTTP/2 sends GOAWAY).
            Some(why) => {
                http.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_IDLE_WITHIN, http.as_mut()).await;
                break why;
            }
            None => {}
        }
        let deadline = conn.deadline(limits).map(|(at, _)| at);
        tokio::select! {
            r = http.as_mut() => break ended(r, draining),
            () = shared.stop.cancelled(), if !draining => {
                draining = true;
                http.as_mut().graceful_shutdown();
            }
            () = shared.abort.cancelled() => break Closed::Shutdown,
            () = sleep_until(deadline), if deadline.is_some() => {}
            () = conn.changed.notified() => {}
            r = waiting.changed(), if waiting_open => waiting_open = r.is_ok(),
        }
    };
    tracing::debug!(%peer, reason = why.as_str(), "client connection closed");
    conn.finish(why);
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Names the end of a connection hyper finished on its own.
fn ended(r: Result<(), Box<dyn std::error::Error + Send + Sync>>, draining: bool) -> Closed {
    let Err(e) = r else {
        return if draining {
            Closed::Shutdown
        } else {
            Closed::Client
        };
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return Closed::HeadTooLarge;
            }
            if h.is_parse() || h.is_parse_status() {
                return Closed::BadRequest;
            }
            if h.is_timeout() {
                return Closed::HeaderTimeout;
            }
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return Closed::Client;
            }
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            match io.kind() {
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    return Closed::Client;
                }
                // hyper-util's version detection, cancelled by a graceful shutdown.
                Interrupted if draining => return Closed::Shutdown,
                _ => {}
            }
        }
        cur = err.source();
    }
    tracing::debug!(error = %e, "client connection ended with an error");
    Closed::Error
}

/// A request in progress: from the service call until its response body is dropped (written to
/// the end, or abandoned with the connection).
struct Busy(Arc<Conn>);

impl Busy {
    fn begin(conn: Arc<Conn>) -> Busy {
        conn.begin();
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request counted as in progress until it is dropped.
struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client socket, telling its connection when bytes arrive.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.conn.on_read(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(Arc::new(InboundStats::default()))
    }

    fn state(c: &Conn) -> State {
        c.clock.lock().state
    }

    #[test]
    fn an_http1_connection_moves_head_active_idle_head() {
        let c = conn();
        assert_eq!(state(&c), State::Head);
        c.on_read(b"GET / HTTP/1.1\r\n");
        assert_eq!(c.clock.lock().proto, Proto::H1);
        assert_eq!(
            state(&c),
            State::Head,
            "the first head is timed from the accept"
        );
        c.begin();
        assert_eq!(state(&c), State::Active);
        c.on_read(b"body bytes");
        assert_eq!(state(&c), State::Active);
        c.end();
        assert_eq!(state(&c), State::Idle);
        c.on_read(b"G");
        assert_eq!(state(&c), State::Head);
        assert_eq!(c.stats.connections(State::Head), 1);
        assert_eq!(c.stats.connections(State::Idle), 0);
    }

    #[test]
    fn an_http2_connection_is_idle_between_streams_whatever_it_sends() {
        let c = conn();
        c.on_read(&H2_PREFACE[..10]);
        assert_eq!(c.clock.lock().proto, Proto::Unknown(10));
        c.on_read(&H2_PREFACE[10..]);
        assert_eq!(c.clock.lock().proto, Proto::H2);
        assert_eq!(state(&c), State::Idle);
        c.begin();
        c.begin();
        c.end();
        assert_eq!(state(&c), State::Active, "one stream still open");
        c.end();
        c.on_read(b"\0\0\x08\x06\0\0\0\0\0ping");
        assert_eq!(state(&c), State::Idle);
    }

    #[test]
    fn deadlines_follow_the_state_and_idle_makes_room_when_someone_waits() {
        let limits = LimitsConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..LimitsConfig::default()
        };
        let c = conn();
        let (at, why) = c.deadline(&limits).unwrap();
        assert_eq!(why, Closed::HeaderTimeout);
        assert!(at > Instant::now() + Duration::from_secs(9));
        assert_eq!(c.due(&limits, true), None, "a head in progress is not idle");
        c.on_read(b"GET");
        c.begin();
        assert_eq!(c.deadline(&limits), None);
        c.end();
        assert_eq!(c.deadline(&limits).unwrap().1, Closed::Idle);
        assert_eq!(c.due(&limits, false), None);
        assert_eq!(c.due(&limits, true), Some(Closed::Limit));
    }
}
