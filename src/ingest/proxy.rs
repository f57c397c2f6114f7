//! The inline sidecar's request path: every client request goes to the primary and the
//! primary's answer streams back untouched; eligible requests are admitted for a shadow, which
//! runs in the background (`ingest/shadow.rs`) and never holds up the client.
//!
//! The request path never waits for a shadow: admission takes a `max_in_flight` permit with
//! `try_acquire` (never awaited) and asks the [`Circuit`]; the shadow task is spawned with
//! everything it needs and gets the bodies through [`TeeBody`] as they stream past. This is
//! what Envoy's mirror (a backed-up shadow delays the response), nginx `mirror` (the next
//! keep-alive request waits for the mirror) and GoReplay (unbounded memory while the target is
//! down) get wrong.

use super::Counters;
use super::admission::Admission;
use super::body::TeeBody;
use super::circuit::Circuit;
use super::config::{MirrorPolicy, ProxyConfig, Upstream, Wire};
use super::grouping::Grouper;
use super::inbound;
use super::resolve::{DNS_TTL, HyperResolver, Resolver};
use super::semantics::{self, Refused};
use super::shadow::{PrimaryCopy, ShadowJob, Shadows, run_shadow};
use super::tls::{TlsClient, TlsError, TlsHttpConnector};
use crate::compare::SkipReason;
use crate::exchange::UpstreamError;
use crate::pipeline::Pipeline;
use crate::pipeline::budget::Budget;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The body clients receive: the primary's, streamed, or our own short error.
pub type ProxyBody = Either<TeeBody<Incoming>, Full<Bytes>>;

/// Why the proxy could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("proxy task failed: {0}")]
    Task(String),
    /// An upstream's TLS settings cannot be used (`check-config` reports the same).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A running proxy.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    circuit: Arc<Circuit>,
    mirror: Arc<ArcSwap<MirrorPolicy>>,
    join: JoinHandle<()>,
}

impl ProxyHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Live counters: requests, shadows in flight (and peak), skips by reason.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The candidate's circuit breaker.
    pub fn circuit(&self) -> Arc<Circuit> {
        self.circuit.clone()
    }

    /// The mirror policy in force (`shadow.methods`, `routes`, `sample`): a reload stores a new
    /// one, which applies from the next request on (requests load it without a lock).
    pub fn mirror(&self) -> Arc<ArcSwap<MirrorPolicy>> {
        self.mirror.clone()
    }

    /// Waits until the proxy has shut down completely (connections closed, shadows finished or
    /// abandoned and handed to the pipeline).
    pub async fn join(self) -> Result<(), ProxyError> {
        self.join.await.map_err(|e| ProxyError::Task(e.to_string()))
    }
}

/// Starts the proxy on `cfg.listen`; it runs until `shutdown` completes, then shuts down
/// gracefully within `cfg.shutdown_grace`: client connections, then shadows. Every exchange
/// (skips included) goes to `pipeline`, which the caller stops once [`ProxyHandle::join`] returns
/// ([`crate::app`] does).
pub async fn start(
    mut cfg: ProxyConfig,
    pipeline: Arc<Pipeline>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ProxyHandle, ProxyError> {
    // The descriptor limit may hold fewer client connections than configured: the cap that fits
    // is the one enforced (`ingest/inbound/budget.rs`).
    let shadows =
        inbound::budget::shadow_connections(cfg.shadow.max_in_flight, cfg.secondary.is_some());
    cfg.limits.max_connections = inbound::budget::at_start(&cfg.limits, shadows).clients;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ProxyError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ProxyError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let f = &cfg;
    let counters = Arc::new(Counters {
        buffered: Budget::new(f.shadow.max_buffered_bytes),
        ..Counters::default()
    });
    let circuit = Arc::new(Circuit::new(
        f.shadow.circuit.failures,
        f.shadow.circuit.cooldown,
    ));
    let inner = Arc::new(Inner::new(
        cfg,
        pipeline,
        counters.clone(),
        circuit.clone(),
    )?);
    let mirror = inner.admission.mirror();
    tracing::info!(
        listen = %local_addr,
        primary = %inner.cfg.primary,
        candidate = %inner.cfg.candidate,
        secondary = ?inner.cfg.secondary.as_ref().map(|s| s.to_string()),
        "proxy listening"
    );
    let join = tokio::spawn(serve(listener, inner, shutdown));
    Ok(ProxyHandle {
        local_addr,
        counters,
        circuit,
        mirror,
        join,
    })
}

struct Inner {
    cfg: ProxyConfig,
    /// The version requests to the primary are sent in.
    primary_version: Version,
    primary: Client<TlsHttpConnector, TeeBody<Incoming>>,
    /// The shadow policy's admission, shared with the recorded-pair source.
    admission: Admission,
    counters: Arc<Counters>,
    grouper: Grouper,
    /// What the shadow tasks share, the comparison workers included.
    shadows: Arc<Shadows>,
}

impl Inner {
    fn new(
        cfg: ProxyConfig,
        pipeline: Arc<Pipeline>,
        counters: Arc<Counters>,
        circuit: Arc<Circuit>,
    ) -> Result<Self, TlsError> {
        // One resolver for every upstream: a name is looked up once per TTL, not per connection.
        let resolver = Resolver::new(DNS_TTL);
        let mut conn = HttpConnector::new_with_resolver(HyperResolver(resolver.clone()));
        conn.set_nodelay(true);
        // `https://` upstreams: built once each, so their TLS sessions are resumed.
        let tls = |side: &'static str, up: &Upstream| {
            up.is_tls()
                .then(|| TlsClient::new(side, up.host(), cfg.tls.get(side), &[b"http/1.1"]))
                .transpose()
        };
        // The primary is spoken to in its own protocol (`protocol:`), whatever the client spoke:
        // an h2 primary gets prior-knowledge h2c, every request multiplexed on its connections.
        let primary_h2 = cfg.primary.cleartext_wire() == Wire::H2;
        let primary = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(primary_h2)
            .build(TlsHttpConnector::new(conn, tls("primary", &cfg.primary)?));
        // The pipeline's stage carries the rules (their templates) and the redaction, reloaded.
        let grouper = Grouper::live(pipeline.stages(), cfg.grouping.max_endpoints);
        let admission = Admission::new(&cfg.shadow, circuit.clone(), counters.clone());
        let shadows = Arc::new(Shadows::new(
            &cfg.shadow,
            (&cfg.candidate, cfg.secondary.as_ref()),
            &cfg.tls,
            resolver,
            circuit,
            counters.clone(),
            pipeline,
        )?);
        Ok(Self {
            primary,
            primary_version: if primary_h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            admission,
            counters,
            grouper,
            shadows,
            cfg,
        })
    }
}

async fn serve(
    listener: TcpListener,
    inner: Arc<Inner>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // The overload controller samples this runtime for as long as the proxy serves.
    let stop_controller = CancellationToken::new();
    tokio::spawn(
        inner
            .counters
            .overload
            .clone()
            .run(inner.cfg.shadow.overload.clone(), stop_controller.clone()),
    );
    let _stop_controller = stop_controller.drop_guard();
    // Client connections, their limits and their draining at shutdown: `ingest/inbound.rs`.
    let limits = inner.cfg.limits.clone();
    let stats = inner.counters.inbound.clone();
    let grace = inner.cfg.shutdown_grace;
    let handler = {
        let inner = inner.clone();
        move |req| handle(inner.clone(), req)
    };
    let deadline = inbound::serve(listener, limits, stats, handler, shutdown, grace).await;
    // Every shadow holds a permit: all permits back means no shadow in flight.
    if tokio::time::timeout_at(deadline, inner.admission.all_back())
        .await
        .is_err()
    {
        let n = inner.counters.in_flight();
        tracing::warn!(
            in_flight = n,
            "abandoning shadows still in flight at the shutdown deadline"
        );
        inner.shadows.cancel.cancel();
        // Cancelled shadows end at their next poll and give their permits back; wait for that
        // (briefly) so nothing of the proxy outlives `join`.
        let _ = tokio::time::timeout(Duration::from_secs(1), inner.admission.all_back()).await;
    }
    tracing::info!("proxy stopped");
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, never forwarded.
/// `Trailer` is not among them (RFC 9110 §6.6.2 made it end-to-end): hyper only sends trailer
/// fields that it declares, so dropping it would drop the trailers.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    // `TE: trailers` says the client accepts trailers: keep that promise for the next hop.
    let trailers_ok = h
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
    for n in named {
        h.remove(n);
    }
    if trailers_ok {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    inner.counters.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let ts = SystemTime::now();
    let (mut head, body) = req.into_parts();
    // Before anything else sees it: neither the primary nor a shadow gets a request the RFCs
    // say to refuse, and every one that goes out carries exactly one Host.
    if let Err(r) = semantics::settle_host(&mut head) {
        inner.counters.refused.add(r);
        tracing::debug!(reason = r.as_str(), method = %head.method, "request refused");
        return Ok(refused(r));
    }
    let endpoint = inner
        .grouper
        .endpoint(head.method.as_str(), head.uri.path());
    let admitted = match inner
        .admission
        .admit(&head.method, head.uri.path(), &head.headers)
    {
        Ok(a) => Some(a),
        Err(reason) => {
            inner.shadows.skip(&endpoint, reason, None);
            None
        }
    };

    strip_hop_by_hop(&mut head.headers);
    let pq = head
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let uri = match inner.cfg.primary.join(&pq) {
        Ok(u) => u,
        Err(e) => return Ok(bad_gateway(&inner.cfg.primary, &e.to_string())),
    };

    let cap = inner.cfg.shadow.max_body_bytes;
    let mut shadow_tx: Option<oneshot::Sender<PrimaryCopy>> = None;
    let req_body = match admitted {
        Some(adm) => {
            let (tee, req_rx) = TeeBody::new(body, cap, inner.shadows.budget.reservation());
            let (ptx, prx) = oneshot::channel();
            shadow_tx = Some(ptx);
            let job = ShadowJob {
                ts,
                started,
                endpoint: endpoint.clone(),
                method: head.method.clone(),
                path_and_query: pq.clone(),
                // A cheap shared clone here; the shadow task detaches it (off the request path).
                headers: head.headers.clone(),
                request_body: req_rx,
                primary: Some(prx),
            };
            inner.counters.shadow_started();
            tokio::spawn(run_shadow(inner.shadows.clone(), adm, job));
            tee
        }
        None => TeeBody::passthrough(body),
    };

    head.uri = uri;
    // The upstream connection speaks the primary's protocol whatever the client spoke.
    head.version = inner.primary_version;
    let primary_sent = Instant::now();
    let resp = match inner
        .primary
        .request(Request::from_parts(head, req_body))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let err = classify(&e);
            tracing::warn!(side = "primary", upstream = %inner.cfg.primary, error = %err, "primary request failed");
            inner
                .shadows
                .skip(&endpoint, SkipReason::PrimaryError, Some(started.elapsed()));
            return Ok(bad_gateway(&inner.cfg.primary, &err.to_string()));
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = match shadow_tx {
        Some(tx) => {
            let (tee, rx) = TeeBody::new(body, cap, inner.shadows.budget.reservation());
            // The shadow may be gone already (abandoned): then nobody needs the copy.
            let _ = tx.send(PrimaryCopy {
                status: parts.status.as_u16(),
                headers: parts.headers.clone(),
                body: rx,
                sent: primary_sent,
            });
            tee
        }
        None => TeeBody::passthrough(body),
    };
    Ok(Response::from_parts(parts, Either::Left(body)))
}

/// The proxy's own answer to a request it does not forward; the connection is closed after it,
/// since a client that sent a malformed request may not agree with us on where the next begins.
fn refused(r: Refused) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "shadowdiff: {r}\n"
    )))));
    *resp.status_mut() = r.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if r == Refused::Connect {
        h.insert(header::ALLOW, HeaderValue::from_static(semantics::ALLOW));
    }
    resp
}

fn bad_gateway(primary: &Upstream, reason: &str) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "shadowdiff: the primary upstream {primary} failed: {reason}\n"
    )))));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Names a transport failure: refused, reset, or other — from the error's source chain.
fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut kind = None;
    while let Some(err) = cur {
        chain.push(err.to_string());
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            kind = kind.or(UpstreamError::from_io_kind(io.kind(), String::new()));
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed() || h.is_canceled())
        {
            kind = kind.or(Some(UpstreamError::Reset(String::new())));
        }
        cur = err.source();
    }
    chain.dedup();
    let msg = chain.join(": ");
    match kind {
        Some(UpstreamError::Refused(_)) => UpstreamError::Refused(msg),
        Some(UpstreamError::Reset(_)) => UpstreamError::Reset(msg),
        _ => UpstreamError::Other(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers, gzip"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-private").is_none() && h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert!(h.get("x-kept").is_some());
    }
}
