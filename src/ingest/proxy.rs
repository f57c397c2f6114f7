//! The inline sidecar: every client request goes to the primary and the primary's answer streams
//! back untouched; eligible requests are copied, in the background, to the candidate (and the
//! secondary), and the exchange is handed to the comparison workers.
//!
//! The request path never waits for a shadow: the shadow task is spawned with everything it
//! needs, gets the request and response bodies through oneshots filled by [`TeeBody`] as they
//! stream past, and is bounded three ways — `max_in_flight` permits (`try_acquire`, never
//! awaited), a timeout per shadow request, and a circuit breaker for a failing candidate. This
//! is what Envoy's mirror (a backed-up shadow delays the response), nginx `mirror` (the next
//! keep-alive request waits for the mirror) and GoReplay (unbounded memory while the target is
//! down) get wrong.

use super::Counters;
use super::body::{CaptureError, Captured, TeeBody};
use super::grouping::Grouper;
use super::resolve::{DNS_TTL, HyperResolver, Resolver};
use super::shadow_client::{ShadowClient, ShadowError, ShadowRequest};
use crate::compare::{Comparator, CompareOptions, SkipReason};
use crate::config::{HostPolicy, ProxyConfig, Upstream};
use crate::exchange::{self, Exchange, Outcome, SendOffsets, UpstreamError};
use crate::pipeline::Sink;
use crate::pipeline::budget::{Budget, Reservation};
use crate::pipeline::pool::{self, Job, Pool};
use crate::redact::Redaction;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
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
    #[error("cannot start comparison workers: {0}")]
    Workers(std::io::Error),
    #[error("proxy task failed: {0}")]
    Task(String),
}

/// A running proxy.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    circuit: Arc<Circuit>,
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

    /// Waits until the proxy has shut down completely (connections closed, shadows finished or
    /// abandoned, comparison queue drained, sink flushed).
    pub async fn join(self) -> Result<(), ProxyError> {
        self.join.await.map_err(|e| ProxyError::Task(e.to_string()))
    }
}

/// Starts the proxy on `cfg.file.listen`; it runs until `shutdown` completes, then shuts down
/// gracefully within `cfg.file.shutdown_grace`. Every verdict (skips included) goes to `sink`.
pub async fn start(
    cfg: ProxyConfig,
    sink: Arc<dyn Sink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ProxyHandle, ProxyError> {
    let listener = TcpListener::bind(cfg.file.listen)
        .await
        .map_err(|source| ProxyError::Bind {
            addr: cfg.file.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ProxyError::Bind {
        addr: cfg.file.listen,
        source,
    })?;
    let f = &cfg.file;
    let comparator = Comparator::new(
        cfg.rules.clone(),
        CompareOptions {
            max_decoded_bytes: f.compare.max_decoded_bytes,
            max_differences: f.compare.max_differences,
        },
    );
    let redaction = Redaction::from_config(&f.redact, f.publish.max_body_bytes);
    let pool = Pool::start(
        pool::Context {
            comparator,
            redaction,
            instance: cfg.instance.clone(),
            sink: sink.clone(),
            refine: Some(cfg.noise.clone() as Arc<dyn crate::pipeline::Refine>),
        },
        f.compare.workers,
        f.compare.queue,
        f.compare.nice,
    )
    .map_err(ProxyError::Workers)?;
    let counters = Arc::new(Counters {
        buffered: Budget::new(f.shadow.max_buffered_bytes),
        ..Counters::default()
    });
    let circuit = Arc::new(Circuit::new(
        f.shadow.circuit.failures,
        f.shadow.circuit.cooldown,
    ));
    let inner = Arc::new(Inner::new(cfg, pool, counters.clone(), circuit.clone()));
    tracing::info!(
        listen = %local_addr,
        primary = %inner.cfg.primary,
        candidate = %inner.cfg.candidate,
        secondary = ?inner.cfg.file.secondary.as_ref().map(|s| s.to_string()),
        "proxy listening"
    );
    let join = tokio::spawn(serve(listener, inner, sink, shutdown));
    Ok(ProxyHandle {
        local_addr,
        counters,
        circuit,
        join,
    })
}

struct Inner {
    cfg: ProxyConfig,
    primary: Client<HttpConnector<HyperResolver>, TeeBody<Incoming>>,
    /// Shadows go out on a lean client of their own: see [`super::shadow_client`] for why not hyper's.
    candidate: ShadowClient,
    secondary: Option<ShadowClient>,
    permits: Arc<Semaphore>,
    permits_total: u32,
    circuit: Arc<Circuit>,
    counters: Arc<Counters>,
    pool: Arc<Pool>,
    grouper: Grouper,
    cancel: CancellationToken,
    budget: Arc<Budget>,
}

impl Inner {
    fn new(cfg: ProxyConfig, pool: Pool, counters: Arc<Counters>, circuit: Arc<Circuit>) -> Self {
        // One resolver for every upstream: a name is looked up once per TTL, not per connection.
        let resolver = Resolver::new(DNS_TTL);
        let mut conn = HttpConnector::new_with_resolver(HyperResolver(resolver.clone()));
        conn.set_nodelay(true);
        let primary = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(conn.clone());
        // A finished shadow frees its permit a moment before its connection goes back to the
        // pool, so the next shadow may open another: the pool is bounded so the connections
        // never creep past `max_in_flight` (with hyper's pool they reached 1,225 for 1,024).
        let shadow_client = |up: &Upstream| {
            ShadowClient::new(
                up.authority(),
                cfg.file.shadow.max_in_flight,
                Duration::from_secs(90),
                resolver.clone(),
            )
        };
        let candidate = shadow_client(&cfg.candidate);
        let secondary = cfg.file.secondary.as_ref().map(shadow_client);
        let permits_total = u32::try_from(cfg.file.shadow.max_in_flight).unwrap_or(u32::MAX >> 3);
        let grouper = Grouper::new(cfg.rules.clone(), cfg.file.grouping.max_endpoints);
        // The budget lives in the counters so `/metrics` can read what is held.
        let budget = Arc::clone(&counters.buffered);
        Self {
            primary,
            candidate,
            secondary,
            permits: Arc::new(Semaphore::new(permits_total as usize)),
            permits_total,
            circuit,
            counters,
            pool: Arc::new(pool),
            grouper,
            cancel: CancellationToken::new(),
            budget,
            cfg,
        }
    }

    /// Counts a skip and lets the sinks observe it (dropped with the count when the queue is full).
    fn skip(&self, endpoint: &Arc<str>, reason: SkipReason, primary_latency: Option<Duration>) {
        self.counters.skip(reason);
        let _ = self.pool.try_submit(Job::Skip {
            ts: SystemTime::now(),
            endpoint: endpoint.clone(),
            reason,
            primary_latency,
        });
    }

    /// Whether the method is mirrored on this route.
    fn mirrored(&self, method: &Method, path: &str) -> bool {
        let s = &self.cfg.file.shadow;
        if let Some(r) = s
            .routes
            .iter()
            .find(|r| r.pattern.matches(method.as_str(), path))
        {
            return r.mirror;
        }
        s.methods.contains(method)
    }

    /// Decides whether to shadow; a permit and (possibly) the circuit's probe slot come with yes.
    fn admit(&self, head: &http::request::Parts) -> Result<Admitted, SkipReason> {
        let s = &self.cfg.file.shadow;
        if head.headers.contains_key(&s.marker) {
            return Err(SkipReason::ShadowLoop);
        }
        if !self.mirrored(&head.method, head.uri.path()) {
            return Err(SkipReason::MethodNotMirrored);
        }
        if s.sample < 1.0 && rand::random::<f64>() >= s.sample {
            return Err(SkipReason::SampledOut);
        }
        if !self.counters.overload.admit() {
            return Err(SkipReason::Overload);
        }
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > s.max_body_bytes as u64) {
            return Err(SkipReason::BodyTooLarge);
        }
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| SkipReason::ShadowQueueFull)?;
        let probe = self.circuit.admit().ok_or(SkipReason::CircuitOpen)?;
        Ok(Admitted { permit, probe })
    }
}

struct Admitted {
    permit: OwnedSemaphorePermit,
    probe: bool,
}

async fn serve(
    listener: TcpListener,
    inner: Arc<Inner>,
    sink: Arc<dyn Sink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    // The overload controller samples this runtime for as long as the proxy serves.
    let stop_controller = CancellationToken::new();
    tokio::spawn(inner.counters.overload.clone().run(
        inner.cfg.file.shadow.overload.clone(),
        stop_controller.clone(),
    ));
    let _stop_controller = stop_controller.drop_guard();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors and the like: keep serving the connections we have.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let inner = inner.clone();
                let svc = service_fn(move |req| handle(inner.clone(), req));
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "client connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let grace = inner.cfg.file.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(grace = ?grace, "shutting down: no new connections; finishing in-flight requests");
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("client connections still open at the shutdown deadline; closing them");
    }
    // Every shadow holds a permit: all permits back means no shadow in flight.
    let all = inner.permits.clone();
    if tokio::time::timeout_at(deadline, all.acquire_many_owned(inner.permits_total))
        .await
        .is_err()
    {
        let n = inner.counters.in_flight();
        tracing::warn!(
            in_flight = n,
            "abandoning shadows still in flight at the shutdown deadline"
        );
        inner.cancel.cancel();
        // Cancelled shadows end at their next poll and give their permits back; wait for that
        // (briefly) so nothing of the proxy outlives `join`.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            inner
                .permits
                .clone()
                .acquire_many_owned(inner.permits_total),
        )
        .await;
    }
    let pool = inner.pool.clone();
    if tokio::task::spawn_blocking(move || pool.stop())
        .await
        .is_err()
    {
        tracing::error!("comparison workers did not stop cleanly");
    }
    if tokio::task::spawn_blocking(move || sink.shutdown(grace))
        .await
        .is_err()
    {
        tracing::error!("sink shutdown panicked");
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

/// What the shadow task needs to know about the primary's answer.
struct PrimaryCopy {
    status: u16,
    headers: HeaderMap,
    body: oneshot::Receiver<Captured>,
    /// When the request was handed to the primary's client (for the send skew).
    sent: Instant,
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    inner.counters.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let ts = SystemTime::now();
    let (mut head, body) = req.into_parts();
    let endpoint = inner
        .grouper
        .endpoint(head.method.as_str(), head.uri.path());
    let admitted = match inner.admit(&head) {
        Ok(a) => Some(a),
        Err(reason) => {
            inner.skip(&endpoint, reason, None);
            None
        }
    };

    strip_hop_by_hop(&mut head.headers);
    // HTTP/2 clients send the authority as `:authority`; HTTP/1.1 upstreams need it as Host.
    if !head.headers.contains_key(header::HOST)
        && let Some(a) = head.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        head.headers.insert(header::HOST, v);
    }
    let pq = head
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let uri = match inner.cfg.primary.join(&pq) {
        Ok(u) => u,
        Err(e) => return Ok(bad_gateway(&inner.cfg.primary, &e.to_string())),
    };

    let cap = inner.cfg.file.shadow.max_body_bytes;
    let mut shadow_tx: Option<oneshot::Sender<PrimaryCopy>> = None;
    let req_body = match admitted {
        Some(adm) => {
            let (tee, req_rx) = TeeBody::new(body, cap, inner.budget.reservation());
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
            tokio::spawn(run_shadow(inner.clone(), adm, job));
            tee
        }
        None => TeeBody::passthrough(body),
    };

    head.uri = uri;
    // The upstream connection is HTTP/1.1 whatever the client spoke.
    head.version = Version::HTTP_11;
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
            inner.skip(&endpoint, SkipReason::PrimaryError, Some(started.elapsed()));
            return Ok(bad_gateway(&inner.cfg.primary, &err.to_string()));
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = match shadow_tx {
        Some(tx) => {
            let (tee, rx) = TeeBody::new(body, cap, inner.budget.reservation());
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

struct ShadowJob {
    ts: SystemTime,
    started: Instant,
    endpoint: Arc<str>,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    request_body: oneshot::Receiver<Captured>,
    /// Taken by the shadow task, which receives it while the shadows are out.
    primary: Option<oneshot::Receiver<PrimaryCopy>>,
}

/// Decrements the in-flight gauge however the shadow task ends (finished, abandoned, panicked).
struct InFlight(Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.shadow_finished();
    }
}

/// Releases the circuit's probe slot if the probe never reached the candidate.
struct ProbeGuard {
    circuit: Arc<Circuit>,
    armed: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.circuit.release_probe();
        }
    }
}

async fn run_shadow(inner: Arc<Inner>, adm: Admitted, job: ShadowJob) {
    let _permit = adm.permit;
    let _gauge = InFlight(inner.counters.clone());
    let mut probe = ProbeGuard {
        circuit: inner.circuit.clone(),
        armed: adm.probe,
    };
    let cancel = inner.cancel.clone();
    tokio::select! {
        () = cancel.cancelled() => {
            inner.counters.shadows_abandoned.fetch_add(1, Ordering::Relaxed);
        }
        () = shadow(&inner, job, &mut probe) => {}
    }
}

async fn shadow(inner: &Arc<Inner>, mut job: ShadowJob, probe: &mut ProbeGuard) {
    // Header values are slices of the client connection's read buffer: detach them here, in the
    // shadow task, rather than on the request path or for the life of the shadow.
    job.headers = detached(&job.headers);
    // The primary's answer arrives while the shadows are out; its headers are detached as soon
    // as it does, so they do not pin the primary connection's buffer until the candidate answers.
    let primary_copy = {
        let rx = job.primary.take();
        async move {
            let mut p = rx?.await.ok()?;
            p.headers = detached(&p.headers);
            Some(p)
        }
    };
    // The client went away mid-request: the primary got no complete request either.
    let Some((body, _, mut held)) = take_copy(inner, &job.endpoint, (&mut job.request_body).await)
    else {
        return;
    };
    // Candidate and secondary go out together: sending one after the other would itself create
    // time-dependent differences that the secondary could not cancel.
    let cand = send_shadow(inner, &inner.candidate, &job, &body);
    let sends = async {
        match &inner.secondary {
            Some(sec) => {
                let (c, s) = tokio::join!(cand, send_shadow(inner, sec, &job, &body));
                (c, Some(s))
            }
            None => (cand.await, None),
        }
    };
    let (((cand_sent, cand), sec), primary) = tokio::join!(sends, primary_copy);
    let (sec_sent, sec) = match sec {
        Some((t, r)) => (Some(t), Some(r)),
        None => (None, None),
    };
    let healthy = matches!(&cand, Ok((Ok(r), _)) if r.status < 500);
    if cand.is_ok() {
        inner.circuit.record(healthy, probe.armed);
        probe.armed = false;
    }
    if let Ok((Err(e), _)) = &cand {
        tracing::debug!(side = "candidate", endpoint = %job.endpoint, error = %e, "shadow request failed");
    }
    // No copy: the primary failed (counted as primary_error where it happened) or the client left.
    let Some(primary) = primary else {
        return;
    };
    let Some((pbody, done, h)) = take_copy(inner, &job.endpoint, primary.body.await) else {
        return;
    };
    held.absorb(h);
    let (candidate, secondary) = match (cand, sec.transpose()) {
        (Ok((c, ch)), Ok(s)) => {
            held.absorb(ch);
            let s = s.map(|(s, sh)| {
                held.absorb(sh);
                s
            });
            (c, s)
        }
        (Err(Dropped::OverBudget), _) | (_, Err(Dropped::OverBudget)) => {
            inner.skip(
                &job.endpoint,
                SkipReason::MemoryBudget,
                Some(done - job.started),
            );
            return;
        }
        _ => {
            inner.skip(
                &job.endpoint,
                SkipReason::BodyTooLarge,
                Some(done - job.started),
            );
            return;
        }
    };
    let (path, query) = match job.path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (job.path_and_query.clone(), None),
    };
    let ex = Exchange {
        id: exchange::new_id(job.ts),
        ts: job.ts,
        source: "proxy",
        endpoint: job.endpoint.to_string(),
        request: exchange::Request {
            method: job.method.as_str().to_string(),
            path,
            query,
            headers: job.headers,
            body,
        },
        primary: exchange::Response {
            status: primary.status,
            headers: primary.headers,
            body: pbody,
            latency: done.saturating_duration_since(job.started),
        },
        candidate,
        secondary,
        sends: Some(SendOffsets::new(primary.sent, cand_sent, sec_sent)),
    };
    match inner.pool.try_submit(Job::Compare(Box::new(ex), held)) {
        Ok(()) => {
            inner.counters.compared.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => inner.counters.skip(SkipReason::CompareQueueFull),
    }
}

/// A body copy for comparison, or `None` after counting why there is none (over the size cap or
/// the memory budget; a body that never completed is not counted: nothing was compared against
/// a complete request or answer).
fn take_copy(
    inner: &Inner,
    endpoint: &Arc<str>,
    copy: Result<Captured, oneshot::error::RecvError>,
) -> Option<(Bytes, Instant, Reservation)> {
    let reason = match copy {
        Ok(Ok(c)) => return Some(c),
        Ok(Err(CaptureError::TooLarge(_))) => SkipReason::BodyTooLarge,
        Ok(Err(CaptureError::OverBudget)) => SkipReason::MemoryBudget,
        Ok(Err(CaptureError::Aborted(_))) | Err(_) => return None,
    };
    inner.skip(endpoint, reason, None);
    None
}

/// Why a shadow answer is not kept for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    /// Larger than `max_body_bytes`.
    TooLarge,
    /// Keeping it would cross `max_buffered_bytes`.
    OverBudget,
}

/// Headers to keep beyond the request: hyper's header values are slices of the connection's
/// read buffer, so a clone would pin that whole buffer (8 KiB and up) for as long as the shadow
/// lives — measured at ~30 KiB per in-flight shadow with a slow candidate. Owned copies of the
/// few hundred bytes actually used cost one small allocation each.
fn detached(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (name, value) in h {
        let Ok(mut v) = HeaderValue::from_bytes(value.as_bytes()) else {
            continue; // cannot happen: the bytes were a valid value already
        };
        v.set_sensitive(value.is_sensitive());
        out.append(name.clone(), v);
    }
    out
}

async fn send_shadow(
    inner: &Inner,
    client: &ShadowClient,
    job: &ShadowJob,
    body: &Bytes,
) -> (Instant, Result<(Outcome, Reservation), Dropped>) {
    let s = &inner.cfg.file.shadow;
    let mut h = job.headers.clone();
    for n in &s.strip_headers {
        h.remove(n);
    }
    for (n, v) in &s.set_headers {
        h.insert(n.clone(), v.clone());
    }
    if !h.contains_key(&s.marker) {
        h.insert(s.marker.clone(), HeaderValue::from_static("1"));
    }
    if s.host == HostPolicy::Candidate
        && let Ok(v) = HeaderValue::from_str(client.authority())
    {
        h.insert(header::HOST, v);
    }
    let req = ShadowRequest {
        method: &job.method,
        path_and_query: &job.path_and_query,
        headers: &h,
        body,
    };
    let started = Instant::now();
    let mut held = inner.budget.reservation();
    let outcome =
        match tokio::time::timeout(s.timeout, client.send(&req, s.max_body_bytes, &mut held)).await
        {
            Err(_) => Ok(Err(UpstreamError::Timeout(s.timeout))),
            Ok(Ok(a)) => Ok(Ok(exchange::Response {
                status: a.status,
                headers: a.headers,
                body: a.body,
                latency: started.elapsed(),
            })),
            Ok(Err(ShadowError::TooLarge(_))) => Err(Dropped::TooLarge),
            Ok(Err(ShadowError::OverBudget)) => Err(Dropped::OverBudget),
            Ok(Err(ShadowError::Upstream(e))) => Ok(Err(e)),
        };
    // Bytes of an answer that is not kept (failed, timed out, dropped) come back here.
    let outcome = outcome.map(|o| {
        let kept = if o.is_ok() {
            std::mem::take(&mut held)
        } else {
            Reservation::default()
        };
        (o, kept)
    });
    (started, outcome)
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
    fn admit(&self) -> Option<bool> {
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

    fn release_probe(&self) {
        self.state.lock().probing = false;
    }

    fn record(&self, ok: bool, probe: bool) {
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
