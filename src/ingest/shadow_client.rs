//! The shadow client: HTTP/1.1 to the candidate (and the secondary) over pooled keep-alive
//! connections, one request at a time per connection.
//!
//! Why not hyper's pooled client, which forwards to the primary: every connection of it is a
//! spawned task with its own state, a dispatch channel and read and write buffers — about 30 KiB
//! per connection, measured with heaptrack. The primary needs few connections; shadows to a slow
//! candidate need `max_in_flight` of them at once (1,024 by default), which made hyper's share
//! ~30 MiB of a sidecar that must stay under 64 MB. Here a connection is a socket and nothing
//! else: a request is written, the socket is awaited for readiness with no buffer allocated, and
//! the answer is read in the shadow's own task. A waiting shadow holds no buffer at all.
//!
//! What it speaks (RFC 9112): requests with a `content-length` body; answers framed by
//! `content-length`, chunked transfer coding (extensions and trailers read and dropped) or the
//! end of the connection; no body for HEAD, 1xx, 204 and 304; interim 1xx answers skipped;
//! keep-alive unless the answer says `close`, is HTTP/1.0, is close-delimited, or sent more than
//! its framing. Heads are parsed by `httparse`, as hyper does. Over TCP, or TLS for `https://`
//! upstreams ([`crate::ingest::tls`]): a TLS connection adds rustls's state to the socket, is
//! pooled the same way, and a new one resumes the session of an earlier one.
//!
//! Limits: a head over [`MAX_HEAD`] is an invalid answer; a body over the caller's cap stops
//! reading at once (`TooLarge`), as does a body the memory budget cannot hold (`OverBudget`).
//! Time is the caller's: the whole exchange runs under the shadow timeout, so a connection
//! dropped mid-exchange is closed, never pooled.

use crate::exchange::UpstreamError;
use crate::ingest::resolve::Resolver;
use crate::ingest::tls::{Conn, TlsClient};
use crate::pipeline::budget::Reservation;
use bytes::Bytes;
use http::{HeaderMap, Method, header};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest answer head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in an answer head.
const MAX_HEADERS: usize = 128;
/// First read of an answer: a typical head and ~1 KB JSON body in one read; grown as needed.
const FIRST_READ: usize = 2048;
/// A `content-length` body up to this size is allocated at once; a longer one grows as it
/// arrives (a slow sender must not hold its whole declared length in the budget).
const EXACT_BODY: usize = 16 * 1024;
/// Least room a read is given once the answer has started.
const MIN_READ: usize = 512;
/// Largest read buffer of a chunked body (it grows to this only while reads fill it): fewer
/// reads of a long body, at most this much per shadow in reading, all of it in the budget.
const CHUNKED_READ: usize = 16 * 1024;
/// Longest chunk-size line (with extensions) and most trailer bytes accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;
/// A request body up to this size goes out in the same write as the head.
const COALESCE_BODY: usize = 16 * 1024;

/// Why a shadow request got no answer to compare: the upstream failed (as the comparator
/// reports it), or the answer is not kept.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The answer's body is over the cap (reading stopped there).
    #[error("answer body over {0} bytes")]
    TooLarge(usize),
    /// Keeping the answer's body would cross the shadow memory budget; how many of its bytes
    /// had arrived (and were held) by then.
    #[error("answer body over the shadow memory budget")]
    OverBudget(usize),
}

impl ShadowError {
    pub(crate) fn io(e: io::Error) -> Self {
        let msg = e.to_string();
        UpstreamError::from_io_kind(e.kind(), msg.clone())
            .unwrap_or(UpstreamError::Other(msg))
            .into()
    }

    fn invalid(what: impl std::fmt::Display) -> Self {
        UpstreamError::Other(format!("invalid answer: {what}")).into()
    }

    fn closed() -> Self {
        UpstreamError::Reset("connection closed before the answer was complete".into()).into()
    }
}

/// A request as the shadow sends it; headers are sent as given except the framing ones
/// (`content-length`, `transfer-encoding`, `connection`), which the client writes itself.
#[derive(Debug)]
pub struct ShadowRequest<'a> {
    pub method: &'a Method,
    /// Origin form (`/path?query`); empty means `/`.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A pooled client for one upstream.
#[derive(Debug)]
pub struct ShadowClient {
    /// As written (`host:port` or `host`): the Host header when the request has none.
    authority: String,
    host: String,
    port: u16,
    /// Shared with the primary's connector: a name is looked up once per TTL for everyone.
    resolver: Arc<Resolver>,
    /// `https://` upstreams: the handshake each new connection goes through.
    tls: Option<TlsClient>,
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    io: Conn,
    since: Instant,
}

impl ShadowClient {
    /// `authority` is `host:port`; with `tls`, every connection is TLS (port 443 unless
    /// written). At most `max_idle` connections are kept between requests, each for at most
    /// `idle_timeout`.
    pub fn new(
        authority: &str,
        tls: Option<TlsClient>,
        max_idle: usize,
        idle_timeout: Duration,
        resolver: Arc<Resolver>,
    ) -> Self {
        let (host, port) = host_and_port(authority, if tls.is_some() { 443 } else { 80 });
        Self {
            authority: authority.to_string(),
            host,
            port,
            resolver,
            tls,
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// The upstream's authority, as written (`host:port`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Idle connections kept now.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    /// Sends `req` and reads the whole answer; the body is kept up to `cap` bytes, each byte
    /// reserved in `held` first.
    pub async fn send(
        &self,
        req: &ShadowRequest<'_>,
        cap: usize,
        held: &mut Reservation,
    ) -> Result<Answer, ShadowError> {
        let mut fresh_only = false;
        loop {
            let pooled = if fresh_only { None } else { self.checkout() };
            let reused = pooled.is_some();
            let mut io = match pooled {
                Some(io) => io,
                None => self.connect().await?,
            };
            match exchange(&mut io, req, &self.authority, cap, held).await {
                Ok((answer, reusable)) => {
                    if reusable {
                        self.checkin(io);
                    }
                    return Ok(answer);
                }
                // The upstream closed a kept connection as the request went out: nothing was
                // answered, so an idempotent request is sent again on a new connection (as
                // browsers and hyper do). A POST is not: the candidate may have acted on it.
                Err(Failure {
                    answered: false,
                    error: ShadowError::Upstream(UpstreamError::Reset(_)),
                }) if reused && idempotent(req.method) => fresh_only = true,
                Err(f) => return Err(f.error),
            }
        }
    }

    async fn connect(&self) -> Result<Conn, ShadowError> {
        let tcp = connect_tcp(&self.resolver, &self.host, self.port).await?;
        match &self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some(tls) => Ok(Conn::Tls(Box::new(tls.wrap(tcp).await?))),
        }
    }

    /// The most recently used live connection; stale and closed ones are dropped on the way.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock();
        while let Some(mut c) = idle.pop_back() {
            if c.since.elapsed() >= self.idle_timeout {
                // Everything older is further to the front.
                idle.clear();
                return None;
            }
            // Closed by the upstream while idle (the reactor has seen the FIN or RST), or
            // holding bytes no request asked for: not usable.
            if c.io.idle_usable() {
                return Some(c.io);
            }
        }
        None
    }

    fn checkin(&self, io: Conn) {
        let mut idle = self.idle.lock();
        while idle
            .front()
            .is_some_and(|c| c.since.elapsed() >= self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(Idle {
                io,
                since: Instant::now(),
            });
        }
    }
}

/// A TCP connection to the first address of `host` that accepts one, with `TCP_NODELAY`:
/// requests are written whole, and waiting to coalesce them only adds latency.
pub(crate) async fn connect_tcp(
    resolver: &Resolver,
    host: &str,
    port: u16,
) -> Result<TcpStream, ShadowError> {
    let mut last = None;
    let ips = resolver
        .addresses(host)
        .await
        .map_err(|e| ShadowError::from(UpstreamError::Other(e)))?;
    for addr in ips.into_iter().map(|ip| SocketAddr::new(ip, port)) {
        match TcpStream::connect(addr).await {
            Ok(io) => {
                io.set_nodelay(true).map_err(ShadowError::io)?;
                return Ok(io);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || UpstreamError::Other(format!("{host} has no address")).into(),
        ShadowError::io,
    ))
}

/// Host (without IPv6 brackets) and port of an authority; `default_port` when it has none.
pub(crate) fn host_and_port(authority: &str, default_port: u16) -> (String, u16) {
    match authority.parse::<http::uri::Authority>() {
        Ok(a) => (
            a.host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            a.port_u16().unwrap_or(default_port),
        ),
        Err(_) => (authority.to_string(), default_port),
    }
}

/// RFC 9110 §9.2.2.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// An exchange that failed, and whether any of an answer had arrived.
#[derive(Debug)]
struct Failure {
    error: ShadowError,
    answered: bool,
}

impl From<ShadowError> for Failure {
    fn from(error: ShadowError) -> Self {
        Failure {
            error,
            answered: true,
        }
    }
}

/// One request and its answer on `io`; also whether `io` may carry another.
async fn exchange(
    io: &mut Conn,
    req: &ShadowRequest<'_>,
    authority: &str,
    cap: usize,
    held: &mut Reservation,
) -> Result<(Answer, bool), Failure> {
    let unanswered = |e: io::Error| Failure {
        error: ShadowError::io(e),
        answered: false,
    };
    {
        let coalesce = req.body.len() <= COALESCE_BODY;
        let out = encode_request(req, authority, coalesce);
        io.write_all(&out).await.map_err(unanswered)?;
        if !coalesce {
            io.write_all(req.body).await.map_err(unanswered)?;
        }
        // TLS holds what it encrypted until flushed (a no-op on plain TCP).
        io.flush().await.map_err(unanswered)?;
    }
    // No read buffer exists until the upstream has something to say: a thousand shadows
    // waiting on a slow candidate hold sockets, not buffers.
    io.readable().await.map_err(unanswered)?;
    read_answer(io, req.method == Method::HEAD, cap, held).await
}

/// The request head (and the body when `with_body`).
fn encode_request(req: &ShadowRequest<'_>, authority: &str, with_body: bool) -> Vec<u8> {
    let pq = if req.path_and_query.is_empty() {
        "/"
    } else {
        req.path_and_query
    };
    let mut out = Vec::with_capacity(
        64 + pq.len()
            + req
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>()
            + if with_body { req.body.len() } else { 0 },
    );
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(pq.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in req.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // A body is always sent with its length; an empty one only where the method has a body.
    if !req.body.is_empty() || matches!(*req.method, Method::POST | Method::PUT | Method::PATCH) {
        out.extend_from_slice(format!("content-length: {}\r\n", req.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if with_body {
        out.extend_from_slice(req.body);
    }
    out
}

mod wire;

use wire::*;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;
