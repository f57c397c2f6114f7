//! The shadow side of the proxy: the background task that sends a copy of an admitted request
//! to the candidate (and the secondary), waits for both answers and the primary's body, and
//! hands the exchange to the comparison workers.
//!
//! Nothing here is awaited by the request path: [`run_shadow`] is spawned with everything it
//! needs and gets the request and response bodies through oneshots filled by [`TeeBody`] as
//! they stream past. It is bounded three ways — the `max_in_flight` permit it holds, a timeout
//! per shadow request, and the candidate's [`Circuit`].
//!
//! [`TeeBody`]: super::body::TeeBody

use super::Counters;
use super::background::{Background, SHADOW_IO_NICE};
use super::body::{CaptureError, Captured, Kept};
use super::circuit::Circuit;
use super::config::{HostPolicy, ShadowConfig, Upstream, Wire};
use super::resolve::Resolver;
use super::rewrite::UpstreamRewrite;
use super::shadow_client::{Answer, ShadowClient, ShadowError, ShadowRequest};
use super::shadow_h2::{Dialer, H2Client};
use super::tls::{TlsClient, TlsError, TlsSection};
use crate::compare::SkipReason;
use crate::exchange::{self, Exchange, Outcome, SendOffsets, Side, UpstreamError};
use crate::pipeline::Pipeline;
use crate::pipeline::budget::{Budget, Reservation};
use crate::pipeline::pool::Job;
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio_util::sync::CancellationToken;

/// What every shadow task shares: the shadow clients, the bounds and where exchanges go.
pub(super) struct Shadows {
    pub(super) cfg: ShadowConfig,
    /// Shadows go out on a lean client of their own: see [`super::shadow_client`] for why not hyper's.
    pub(super) candidate: ShadowTarget,
    pub(super) secondary: Option<ShadowTarget>,
    pub(super) circuit: Arc<Circuit>,
    pub(super) counters: Arc<Counters>,
    pub(super) pipeline: Arc<Pipeline>,
    /// Cancelled at the shutdown deadline: shadows still in flight are abandoned.
    pub(super) cancel: CancellationToken,
    pub(super) budget: Arc<Budget>,
    /// Where the shadow clients' socket work runs: below forwarding's priority.
    pub(super) io: Background,
    /// A live primary reached like a shadow: only a recorded-pair source's double run
    /// ([`super::recorded`]) has one; the proxy forwards to its primary itself.
    pub(super) primary: Option<ShadowTarget>,
}

impl Shadows {
    /// The shadow clients for the candidate (and secondary) under `cfg`, sharing `resolver`;
    /// the memory budget is the counters' (so `/metrics` reads what is held). Call it from
    /// within a runtime (the shadow I/O thread starts here).
    pub(super) fn new(
        cfg: &ShadowConfig,
        (candidate, secondary): (&Upstream, Option<&Upstream>),
        tls: &TlsSection,
        resolver: Arc<Resolver>,
        circuit: Arc<Circuit>,
        counters: Arc<Counters>,
        pipeline: Arc<Pipeline>,
    ) -> Result<Self, TlsError> {
        let budget = Arc::clone(&counters.buffered);
        Ok(Self {
            cfg: cfg.clone(),
            candidate: client(cfg, "candidate", candidate, tls, &resolver)?,
            secondary: match secondary {
                Some(s) => Some(client(cfg, "secondary", s, tls, &resolver)?),
                None => None,
            },
            circuit,
            counters,
            pipeline,
            cancel: CancellationToken::new(),
            budget,
            io: Background::lowered(SHADOW_IO_NICE),
            primary: None,
        })
    }

    /// Counts a skip and lets the sinks observe it (dropped with the count when the queue is full).
    pub(super) fn skip(
        &self,
        endpoint: &Arc<str>,
        reason: SkipReason,
        primary_latency: Option<Duration>,
    ) {
        self.counters.skip(reason);
        let _ = self.pipeline.try_submit(Job::Skip {
            ts: SystemTime::now(),
            endpoint: endpoint.clone(),
            reason,
            primary_latency,
        });
    }
}

/// A shadow client for `up`. A finished shadow frees its permit a moment before its connection
/// goes back to the pool, so the next shadow may open another: the pool is bounded so the
/// connections never creep past `max_in_flight` (with hyper's pool they reached 1,225 for
/// 1,024).
/// An `https://` upstream gets its TLS client here, built once so its sessions are resumed.
pub(super) fn client(
    cfg: &ShadowConfig,
    side: &'static str,
    up: &Upstream,
    tls: &TlsSection,
    resolver: &Arc<Resolver>,
) -> Result<ShadowTarget, TlsError> {
    // HTTP/2 shadows over plain TCP (prior-knowledge h2c); over TLS the connection offers
    // HTTP/1.1 only (ALPN h2 is not built yet: config refuses `protocol: h2` on `https://`).
    if up.cleartext_wire() == Wire::H2 && !up.is_tls() {
        return Ok(ShadowTarget::H2(H2Client::new(
            up.authority(),
            Dialer::Tcp,
            resolver.clone(),
        )));
    }
    let tls = up
        .is_tls()
        .then(|| TlsClient::new(side, up.host(), tls.get(side), &[b"http/1.1"]))
        .transpose()?;
    Ok(ShadowTarget::Http1(ShadowClient::new(
        up.authority(),
        tls,
        cfg.max_in_flight,
        Duration::from_secs(90),
        resolver.clone(),
    )))
}

/// What a shadow request is: the client's request as the primary got it. Owned, because each
/// side's copy is sent from the shadow I/O thread.
#[derive(Clone)]
pub(super) struct Outgoing {
    pub(super) endpoint: Arc<str>,
    pub(super) method: Method,
    pub(super) path_and_query: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// The request's trailers: sent with HTTP/2 shadows (an HTTP/1.1 shadow is sent with a
    /// length, which has no trailer section).
    pub(super) trailers: Option<HeaderMap>,
}

/// A side's answer kept for comparison (with the bytes it holds), or over the memory budget.
pub(super) type Sent = Result<(Outcome, Reservation), OverBudget>;

/// The candidate's and the secondary's answers and when each request left.
pub(super) struct Pair {
    pub(super) cand_sent: Instant,
    pub(super) cand: Sent,
    pub(super) sec: Option<(Instant, Sent)>,
}

impl Pair {
    /// The candidate's answer crossed `max_body_bytes`: its failure only when the primary's
    /// fits, which the caller learns later ([`settle_with_primary`]).
    pub(super) fn candidate_too_large(&self) -> bool {
        matches!(&self.cand, Ok((Err(UpstreamError::TooLarge(_)), _)))
    }
}

/// Sends to the candidate and the secondary together (one after the other would itself create
/// time-dependent differences that the secondary could not cancel), and tells the circuit how
/// the candidate did — except for an answer over the cap, settled by [`settle_with_primary`].
pub(super) async fn send_pair(
    shadows: &Arc<Shadows>,
    out: &Outgoing,
    probe: &mut ProbeGuard,
) -> Pair {
    let cand = send_shadow(shadows, Side::Candidate, out);
    let ((cand_sent, cand), sec) = match &shadows.secondary {
        Some(_) => {
            let (c, s) = tokio::join!(cand, send_shadow(shadows, Side::Secondary, out));
            (c, Some(s))
        }
        None => (cand.await, None),
    };
    let pair = Pair {
        cand_sent,
        cand,
        sec,
    };
    let healthy = matches!(&pair.cand, Ok((Ok(r), _)) if r.status < 500);
    if pair.cand.is_ok() && !pair.candidate_too_large() {
        shadows.circuit.record(healthy, probe.armed);
        probe.armed = false;
    }
    if let Ok((Err(e), _)) = &pair.cand
        && tracing::enabled!(tracing::Level::DEBUG)
    {
        // The error may quote the answer (`invalid answer: chunk size "…"`): logged redacted
        // (and redacted only when logged: a failing candidate fails thousands of times).
        let error = shadows.pipeline.stage().redaction.quoted(&e.to_string());
        tracing::debug!(side = "candidate", endpoint = %out.endpoint, %error, "shadow request failed");
    }
    pair
}

/// What is known of the primary's answer once it has passed.
pub(super) enum PrimarySize {
    /// Over `max_body_bytes`.
    TooLarge,
    /// Its body's length.
    Len(usize),
    /// No copy (the primary failed, the budget could not hold it, the client left).
    Unknown,
}

/// Tells the circuit what only the primary's answer can settle:
/// - an answer over the cap is the candidate's failure only when the primary's fits (a primary
///   over the cap is `body_too_large` whatever the candidate did);
/// - an answer the budget could not hold is never the candidate's error (a `memory_budget`
///   skip, [`keep_answers`]), but one that had already outgrown the primary's whole answer is
///   the breaker's business: a candidate streaming endless or huge answers fills the shared
///   budget long before any one answer reaches `max_body_bytes`, and only the breaker stops the
///   reading that costs forwarding its CPU. An answer no bigger than the primary's, refused
///   because other copies (large POST bodies, say) filled the budget, is not counted.
pub(super) fn settle_with_primary(
    shadows: &Shadows,
    pair: &Pair,
    primary: PrimarySize,
    probe: &mut ProbeGuard,
) {
    let failed = match (&pair.cand, primary) {
        (Ok((Err(UpstreamError::TooLarge(_)), _)), p) => !matches!(p, PrimarySize::TooLarge),
        (Err(OverBudget(got)), PrimarySize::Len(p)) => *got > p,
        _ => false,
    };
    if failed {
        shadows.circuit.record(false, probe.armed);
        probe.armed = false;
    }
}

/// The candidate's and secondary's outcomes, their bytes moved into `held`; `None`, counted as
/// a `memory_budget` skip, when one answer did not fit the budget. The budget is shared with
/// every other shadow and copy: an answer it cannot hold says how loaded the sidecar is, not
/// what the candidate did. Skipped, never held against it.
pub(super) fn keep_answers(
    shadows: &Shadows,
    endpoint: &Arc<str>,
    pair: Pair,
    held: &mut Reservation,
    primary_latency: Option<Duration>,
) -> Option<(Outcome, Option<Outcome>)> {
    let sec = pair.sec.map(|(_, s)| s);
    match (pair.cand, sec.transpose()) {
        (Ok((c, ch)), Ok(s)) => {
            held.absorb(ch);
            let s = s.map(|(s, sh)| {
                held.absorb(sh);
                s
            });
            Some((c, s))
        }
        (Err(OverBudget(_)), _) | (_, Err(OverBudget(_))) => {
            shadows.skip(endpoint, SkipReason::MemoryBudget, primary_latency);
            None
        }
    }
}

/// The ticket a shadow runs on: a `max_in_flight` permit, and whether it is the circuit's probe.
pub(super) struct Admitted {
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) probe: bool,
}

/// A shadow to run: what the request path knows when it admits one.
pub(super) struct ShadowJob {
    pub(super) ts: SystemTime,
    pub(super) started: Instant,
    pub(super) endpoint: Arc<str>,
    pub(super) method: Method,
    pub(super) path_and_query: String,
    pub(super) headers: HeaderMap,
    pub(super) request_body: oneshot::Receiver<Captured>,
    /// Taken by the shadow task, which receives it while the shadows are out.
    pub(super) primary: Option<oneshot::Receiver<PrimaryCopy>>,
}

/// What the shadow task needs to know about the primary's answer.
pub(super) struct PrimaryCopy {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: oneshot::Receiver<Captured>,
    /// When the request was handed to the primary's client (for the send skew).
    pub(super) sent: Instant,
}

/// Decrements the in-flight gauge however the shadow task ends (finished, abandoned, panicked).
pub(super) struct InFlight(pub(super) Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.shadow_finished();
    }
}

/// Releases the circuit's probe slot if the probe never reached the candidate.
pub(super) struct ProbeGuard {
    pub(super) circuit: Arc<Circuit>,
    pub(super) armed: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.circuit.release_probe();
        }
    }
}

pub(super) async fn run_shadow(shadows: Arc<Shadows>, adm: Admitted, job: ShadowJob) {
    let _permit = adm.permit;
    let _gauge = InFlight(shadows.counters.clone());
    let mut probe = ProbeGuard {
        circuit: shadows.circuit.clone(),
        armed: adm.probe,
    };
    let cancel = shadows.cancel.clone();
    tokio::select! {
        () = cancel.cancelled() => {
            shadows.counters.shadows_abandoned.fetch_add(1, Ordering::Relaxed);
        }
        () = shadow(&shadows, job, &mut probe) => {}
    }
}

async fn shadow(shadows: &Arc<Shadows>, mut job: ShadowJob, probe: &mut ProbeGuard) {
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
    let Some(Kept {
        body,
        mut held,
        trailers: request_trailers,
        ..
    }) = take_copy(shadows, &job.endpoint, (&mut job.request_body).await)
    else {
        return;
    };
    // A request's trailers go out with its HTTP/2 shadows (HTTP/1.1 shadows are sent with a
    // length, which has no trailer section).
    let request_trailers = request_trailers.map(|t| detached(&t));
    let out = Outgoing {
        endpoint: job.endpoint.clone(),
        method: job.method.clone(),
        path_and_query: std::mem::take(&mut job.path_and_query),
        headers: std::mem::take(&mut job.headers),
        body: body.clone(),
        trailers: request_trailers,
    };
    let (pair, primary) = tokio::join!(send_pair(shadows, &out, probe), primary_copy);
    // Moved out only for the sends: the exchange keeps them.
    (job.path_and_query, job.headers) = (out.path_and_query, out.headers);
    let (cand_sent, sec_sent) = (pair.cand_sent, pair.sec.as_ref().map(|(t, _)| *t));
    // No copy: the primary failed (counted as primary_error where it happened) or the client left.
    let primary_copy = match primary {
        Some(mut p) => Some(((&mut p.body).await, p)),
        None => None,
    };
    let primary_size = match &primary_copy {
        Some((Ok(Err(CaptureError::TooLarge(_))), _)) => PrimarySize::TooLarge,
        Some((Ok(Ok(k)), _)) => PrimarySize::Len(k.body.len()),
        _ => PrimarySize::Unknown,
    };
    settle_with_primary(shadows, &pair, primary_size, probe);
    let Some((copy, primary)) = primary_copy else {
        return;
    };
    // A primary answer over the cap is `body_too_large` whatever the candidate did: nothing
    // could be compared.
    let Some(Kept {
        body: pbody,
        done,
        held: h,
        trailers,
    }) = take_copy(shadows, &job.endpoint, copy)
    else {
        return;
    };
    held.absorb(h);
    // Trailers are compared with the headers: a gRPC status sent in the trailers and one sent
    // in a trailers-only answer's headers are the same answer.
    let mut primary_headers = primary.headers;
    if let Some(t) = trailers {
        merge_trailers(&mut primary_headers, &detached(&t));
    }
    let Some((candidate, secondary)) = keep_answers(
        shadows,
        &job.endpoint,
        pair,
        &mut held,
        Some(done - job.started),
    ) else {
        return;
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
            headers: primary_headers,
            body: pbody,
            latency: done.saturating_duration_since(job.started),
        },
        candidate,
        secondary,
        sends: Some(SendOffsets::new(primary.sent, cand_sent, sec_sent)),
    };
    submit(shadows, ex, held);
}

/// Hands a complete exchange to the comparison workers; a full queue is counted.
pub(super) fn submit(shadows: &Shadows, ex: Exchange, held: Reservation) {
    match shadows
        .pipeline
        .try_submit(Job::Compare(Box::new(ex), held))
    {
        Ok(()) => {
            shadows.counters.compared.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => shadows.counters.skip(SkipReason::CompareQueueFull),
    }
}

/// A body copy for comparison, or `None` after counting why there is none (over the size cap or
/// the memory budget; a body that never completed is not counted: nothing was compared against
/// a complete request or answer).
fn take_copy(
    shadows: &Shadows,
    endpoint: &Arc<str>,
    copy: Result<Captured, oneshot::error::RecvError>,
) -> Option<Kept> {
    let reason = match copy {
        Ok(Ok(c)) => return Some(c),
        Ok(Err(CaptureError::TooLarge(_))) => SkipReason::BodyTooLarge,
        Ok(Err(CaptureError::OverBudget)) => SkipReason::MemoryBudget,
        Ok(Err(CaptureError::Aborted(_))) | Err(_) => return None,
    };
    shadows.skip(endpoint, reason, None);
    None
}

/// A shadow answer not kept because keeping it would cross `shadow.max_buffered_bytes`; how
/// many of its body's bytes had arrived by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OverBudget(pub(super) usize);

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

/// Sends one shadow request and reads its answer under the shadow timeout, on the shadow I/O
/// thread (see [`super::background`]). An answer that crosses `max_body_bytes` or the deadline
/// stops being read at once and its connection is closed (never pooled): the outcome is then
/// an error that says which (`TooLarge`, `Timeout`). Returns when the request went out, too.
pub(super) async fn send_shadow(
    shadows: &Arc<Shadows>,
    side: Side,
    out: &Outgoing,
) -> (Instant, Sent) {
    let (sh, method, pq, headers, body, trailers) = (
        shadows.clone(),
        out.method.clone(),
        out.path_and_query.clone(),
        out.headers.clone(),
        out.body.clone(),
        out.trailers.clone(),
    );
    let io = shadows.io.spawn(async move {
        let client = match side {
            Side::Secondary => sh.secondary.as_ref(),
            Side::Primary => sh.primary.as_ref(),
            Side::Candidate => Some(&sh.candidate),
        };
        let Some(client) = client else {
            let e = UpstreamError::Other(format!("no {} upstream", side.as_str()));
            return (Instant::now(), Ok((Err(e), Reservation::default())));
        };
        // A replay's live primary (a double run) gets the request as recorded: rewrites are for
        // the shadows.
        let as_recorded = UpstreamRewrite::default();
        let rewrite = match side {
            Side::Secondary => &sh.cfg.secondary,
            Side::Candidate => &sh.cfg.candidate,
            Side::Primary => &as_recorded,
        };
        let mut h = shadow_headers(&sh.cfg, client, headers);
        rewrite.headers(&mut h);
        let req = ShadowRequest {
            method: &method,
            path_and_query: &rewrite.path_and_query(&pq),
            headers: &h,
            body: &body,
        };
        let s = &sh.cfg;
        let started = Instant::now();
        let mut held = sh.budget.reservation();
        let sent = client.send(&req, trailers.as_ref(), s.max_body_bytes, &mut held);
        let sent = tokio::time::timeout(s.timeout, sent);
        let outcome = match sent.await {
            Err(_) => Ok(Err(UpstreamError::Timeout(s.timeout))),
            Ok(Ok(a)) => Ok(Ok(exchange::Response {
                status: a.status,
                headers: a.headers,
                body: a.body,
                latency: started.elapsed(),
            })),
            Ok(Err(ShadowError::TooLarge(cap))) => Ok(Err(UpstreamError::TooLarge(cap))),
            Ok(Err(ShadowError::OverBudget(n))) => Err(OverBudget(n)),
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
    });
    io.await.unwrap_or_else(|| {
        // Only when the proxy is stopping: the I/O thread is gone.
        let e = UpstreamError::Other("shadow I/O thread stopped".into());
        (Instant::now(), Ok((Err(e), Reservation::default())))
    })
}

/// The headers a shadow copy carries: the client's, less `strip_headers`, plus `set_headers`,
/// the loop marker and (unless `host: original`) the shadow upstream's own Host; then the
/// upstream's header rewrites (`shadow.candidate.rewrite`) apply to all of these.
fn shadow_headers(s: &ShadowConfig, client: &ShadowTarget, mut h: HeaderMap) -> HeaderMap {
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
    h
}

/// Appends a trailer section to the headers it is compared with; a trailer never replaces a
/// header of the same name (both are kept, as they were sent).
pub(super) fn merge_trailers(headers: &mut HeaderMap, trailers: &HeaderMap) {
    for (name, value) in trailers {
        headers.append(name.clone(), value.clone());
    }
}

/// Where one upstream's shadows go: the lean HTTP/1.1 client, or HTTP/2 (`protocol: h2`).
#[derive(Debug)]
pub(super) enum ShadowTarget {
    Http1(ShadowClient),
    H2(H2Client),
}

impl ShadowTarget {
    pub(super) fn authority(&self) -> &str {
        match self {
            ShadowTarget::Http1(c) => c.authority(),
            ShadowTarget::H2(c) => c.authority(),
        }
    }

    /// Sends a request (with its trailers over HTTP/2) and reads the whole answer, its body kept
    /// up to `cap` bytes and reserved in `held` first; an HTTP/2 answer's trailers are appended
    /// to its headers.
    pub(super) async fn send(
        &self,
        req: &ShadowRequest<'_>,
        trailers: Option<&HeaderMap>,
        cap: usize,
        held: &mut Reservation,
    ) -> Result<Answer, ShadowError> {
        match self {
            ShadowTarget::Http1(c) => c.send(req, cap, held).await,
            ShadowTarget::H2(c) => c.send(req, trailers, cap, held).await,
        }
    }
}
