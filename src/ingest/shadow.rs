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
use super::config::{ShadowConfig, Upstream};
use super::resolve::Resolver;
use super::tls::{TlsError, TlsSection};
use crate::compare::SkipReason;
use crate::exchange::{self, Exchange, Outcome, SendOffsets, Side, UpstreamError};
use crate::pipeline::Pipeline;
use crate::pipeline::budget::{Budget, Reservation};
use crate::pipeline::pool::Job;
use bytes::Bytes;
use http::Method;
use http::header::{HeaderMap, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio_util::sync::CancellationToken;

mod send;
pub(super) use send::{ShadowTarget, client, merge_trailers, send_shadow};

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
