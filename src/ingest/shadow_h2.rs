//! Shadows over HTTP/2 (`protocol: h2`): the candidate's (or secondary's) requests multiplexed
//! on one connection per upstream, made with hyper's HTTP/2 client connection.
//!
//! Why one connection and hyper here, when HTTP/1.1 shadows have a client of their own
//! ([`super::shadow_client`]): that client exists because hyper costs ~30 KiB per connection
//! and 1,024 slow HTTP/1.1 shadows need 1,024 connections. Over HTTP/2 they share one: the
//! per-connection cost is paid once per upstream, and a waiting shadow is a stream (a few
//! hundred bytes in `h2`), not a socket. The connection is redialled when it closes; requests
//! beyond the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` wait in `h2` for a stream, still
//! under the shadow timeout and the `max_in_flight` permits.
//!
//! Memory: answer bodies are read into a budgeted [`Collector`] under the caller's cap, as the
//! HTTP/1.1 client does (`TooLarge` and `OverBudget` alike: reading stops and the stream is
//! reset). What the connection buffers before a shadow reads it is bounded by flow control:
//! [`STREAM_WINDOW`] per stream and [`CONNECTION_WINDOW`] for all of them, outside the budget.
//! Reading releases window as it goes, so a slow reader slows the upstream instead of growing.
//!
//! Where the bytes go is the [`Dialer`]'s: plain TCP (prior-knowledge h2c) now; a TLS stream
//! whose ALPN settled on `h2` plugs in as another dialer, the rest unchanged.

use super::buffer::Collector;
use super::resolve::Resolver;
use super::shadow_client::{Answer, MAX_HEAD, ShadowError, ShadowRequest, connect_tcp};
use crate::exchange::UpstreamError;
use crate::pipeline::budget::Reservation;
use bytes::Bytes;
use http::{HeaderMap, Request, Uri, Version, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// Receive window of one stream: what an upstream may send a shadow before it reads.
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// Receive window of the connection: what all of an upstream's streams may hold unread.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// A byte stream an HTTP/2 connection runs over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// How a connection to the upstream is opened.
#[derive(Debug, Clone)]
pub enum Dialer {
    /// Plain TCP, HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3).
    Tcp,
}

impl Dialer {
    async fn dial(
        &self,
        resolver: &Resolver,
        host: &str,
        port: u16,
    ) -> Result<Pin<Box<dyn Io>>, ShadowError> {
        match self {
            Dialer::Tcp => Ok(Box::pin(connect_tcp(resolver, host, port).await?)),
        }
    }
}

/// An HTTP/2 client for one upstream (see the module docs).
#[derive(Debug)]
pub struct H2Client {
    authority: String,
    host: String,
    port: u16,
    dialer: Dialer,
    resolver: Arc<Resolver>,
    /// The live connection; a lock held across a dial, so that shadows arriving together while
    /// there is none wait for one connection instead of each opening its own.
    conn: tokio::sync::Mutex<Option<SendRequest<Whole>>>,
}

impl H2Client {
    /// `authority` is `host:port`.
    pub fn new(authority: &str, dialer: Dialer, resolver: Arc<Resolver>) -> Self {
        let (host, port) = super::shadow_client::host_and_port(authority, 80);
        Self {
            authority: authority.to_string(),
            host,
            port,
            dialer,
            resolver,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The upstream's authority, as written (`host:port`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The connection's sender, dialling when there is none or it closed.
    async fn sender(&self) -> Result<SendRequest<Whole>, ShadowError> {
        let mut conn = self.conn.lock().await;
        if let Some(s) = conn.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        *conn = None;
        let io = self
            .dialer
            .dial(&self.resolver, &self.host, self.port)
            .await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEAD as u32)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| ShadowError::from(hyper_error(&e)))?;
        let authority = self.authority.clone();
        // The connection is driven where the shadows run (the shadow I/O thread); it ends when
        // the upstream closes it or every sender is gone.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(upstream = %authority, error = %e, "h2 shadow connection ended");
            }
        });
        *conn = Some(sender.clone());
        Ok(sender)
    }

    /// Sends `req` (and `trailers` after its body) and reads the whole answer; the body is kept
    /// up to `cap` bytes, each byte reserved in `held` first. The answer's trailers are appended
    /// to its headers.
    pub async fn send(
        &self,
        req: &ShadowRequest<'_>,
        trailers: Option<&HeaderMap>,
        cap: usize,
        held: &mut Reservation,
    ) -> Result<Answer, ShadowError> {
        let mut sender = self.sender().await?;
        let request = self.request(req, trailers)?;
        sender
            .ready()
            .await
            .map_err(|e| ShadowError::from(hyper_error(&e)))?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| ShadowError::from(hyper_error(&e)))?;
        let (parts, mut body) = resp.into_parts();
        let mut headers = parts.headers;
        let mut kept = Collector::new(held.sibling());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ShadowError::from(hyper_error(&e)))?;
            match frame.into_data() {
                Ok(data) => {
                    // Dropping the body here resets the stream: nothing more is sent or read.
                    if kept.len().saturating_add(data.len()) > cap {
                        return Err(ShadowError::TooLarge(cap));
                    }
                    if !kept.extend(&data) {
                        return Err(ShadowError::OverBudget(kept.len() + data.len()));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        append(&mut headers, trailers);
                    }
                }
            }
        }
        let got = kept.len();
        let (body, body_held) = kept.freeze().ok_or(ShadowError::OverBudget(got))?;
        held.absorb(body_held);
        Ok(Answer {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }

    /// The request as HTTP/2 sends it: the target in `:scheme`/`:authority`/`:path` (the Host
    /// header, when the shadow carries one, is the authority: RFC 9113 §8.3.1), the body with
    /// its length, no connection-specific fields.
    fn request(
        &self,
        req: &ShadowRequest<'_>,
        trailers: Option<&HeaderMap>,
    ) -> Result<Request<Whole>, ShadowError> {
        let authority = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or(&self.authority);
        let pq = if req.path_and_query.is_empty() {
            "/"
        } else {
            req.path_and_query
        };
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|e| ShadowError::from(UpstreamError::Other(format!("request target: {e}"))))?;
        let mut r = Request::new(Whole {
            data: (!req.body.is_empty()).then(|| Bytes::copy_from_slice(req.body)),
            trailers: trailers.cloned(),
        });
        *r.method_mut() = req.method.clone();
        *r.uri_mut() = uri;
        *r.version_mut() = Version::HTTP_2;
        let h = r.headers_mut();
        for (name, value) in req.headers {
            if CONNECTION_SPECIFIC.contains(&name.as_str()) || name == header::HOST {
                continue;
            }
            // `te` is allowed in HTTP/2 only as `trailers` (RFC 9113 §8.2.2), which gRPC needs.
            if name == header::TE && value != "trailers" {
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        if !req.body.is_empty() {
            h.insert(header::CONTENT_LENGTH, req.body.len().into());
        }
        Ok(r)
    }
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2); `h2` refuses a request carrying one. The length is
/// the client's to write.
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "keep-alive",
    "proxy-connection",
];

fn append(headers: &mut HeaderMap, trailers: HeaderMap) {
    let mut name = None;
    for (n, v) in trailers {
        if let Some(n) = n {
            name = Some(n);
        }
        if let Some(n) = &name {
            headers.append(n.clone(), v);
        }
    }
}

/// A request body held whole, then its trailers: what a shadow sends.
#[derive(Debug)]
pub struct Whole {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Whole {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = match this.data.take() {
            Some(d) => Some(Frame::data(d)),
            None => this.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Names a hyper failure the way the comparator reports candidate failures.
fn hyper_error(e: &hyper::Error) -> UpstreamError {
    let mut msg = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        if let Some(io) = s.downcast_ref::<io::Error>()
            && let Some(k) = UpstreamError::from_io_kind(io.kind(), msg.clone())
        {
            return k;
        }
        cur = s.source();
    }
    if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
        UpstreamError::Reset(msg)
    } else {
        UpstreamError::Other(msg)
    }
}

#[cfg(test)]
mod tests;
