//! A connection to an upstream, plain or TLS ([`Conn`]), and hyper's connector for the
//! primary built on it ([`TlsHttpConnector`]).

use super::TlsClient;
use crate::ingest::resolve::HyperResolver;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connection to an upstream. The TLS state is boxed: an idle plain connection stays the
/// size of a socket handle in the shadow client's pool.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(io) => io,
            Conn::Tls(io) => io.get_ref().0,
        }
    }

    /// Waits until the upstream has sent something, without a read buffer. A TLS connection
    /// holds no decrypted bytes here: its answers only come after a request, and what came
    /// after the last answer was read (or made the connection unusable, see
    /// [`Conn::idle_usable`]) before the request went out.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp().readable().await
    }

    /// Whether a kept connection can carry a request: not closed by the upstream, and holding
    /// no bytes nobody asked for. Never waits. On TLS, records that carry no data (TLS 1.3
    /// session tickets sent after the handshake) are taken in on the way; a `close_notify` or
    /// any data is a no.
    pub fn idle_usable(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            Conn::Plain(io) => {
                matches!(io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Conn::Tls(io) => {
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(Waker::noop());
                Pin::new(io.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }

    /// Whether TLS ALPN chose HTTP/2.
    pub fn alpn_h2(&self) -> bool {
        matches!(self, Conn::Tls(io) if io.get_ref().1.alpn_protocol() == Some(b"h2"))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, b),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(io) => io.is_write_vectored(),
            Conn::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let c = self.tcp().connected();
        if self.alpn_h2() { c.negotiated_h2() } else { c }
    }
}

/// hyper's connector to the primary: its HTTP connector (with the shared resolver), then the
/// TLS handshake when the primary is `https://`.
#[derive(Clone)]
pub struct TlsHttpConnector {
    http: HttpConnector<HyperResolver>,
    tls: Option<Arc<TlsClient>>,
}

impl TlsHttpConnector {
    pub fn new(mut http: HttpConnector<HyperResolver>, tls: Option<TlsClient>) -> Self {
        // `https://` URIs reach this connector; TLS is ours, not the HTTP connector's to refuse.
        http.enforce_http(false);
        Self {
            http,
            tls: tls.map(Arc::new),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for TlsHttpConnector {
    type Response = TokioIo<Conn>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Conn>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connecting = self.http.call(dst);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let conn = match tls {
                None => Conn::Plain(tcp),
                Some(t) => Conn::Tls(Box::new(t.wrap(tcp).await?)),
            };
            Ok(TokioIo::new(conn))
        })
    }
}
