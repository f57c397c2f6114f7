//! One shadow request on the wire: the client an upstream gets (HTTP/1.1, HTTP/2, TLS), the
//! headers a shadow carries, and sending it and reading its answer on the shadow I/O thread.

use super::{Outgoing, OverBudget, Sent, Shadows};
use crate::exchange::{self, Side, UpstreamError};
use crate::ingest::config::{HostPolicy, ShadowConfig, Upstream, Wire};
use crate::ingest::resolve::Resolver;
use crate::ingest::rewrite::UpstreamRewrite;
use crate::ingest::shadow_client::{Answer, ShadowClient, ShadowError, ShadowRequest};
use crate::ingest::shadow_h2::{Dialer, H2Client};
use crate::ingest::tls::{TlsClient, TlsError, TlsSection};
use crate::pipeline::budget::Reservation;
use http::header::{self, HeaderMap, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shadow client for `up`. A finished shadow frees its permit a moment before its connection
/// goes back to the pool, so the next shadow may open another: the pool is bounded so the
/// connections never creep past `max_in_flight` (with hyper's pool they reached 1,225 for
/// 1,024).
/// An `https://` upstream gets its TLS client here, built once so its sessions are resumed.
pub(in crate::ingest) fn client(
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

/// Sends one shadow request and reads its answer under the shadow timeout, on the shadow I/O
/// thread (see [`super::background`]). An answer that crosses `max_body_bytes` or the deadline
/// stops being read at once and its connection is closed (never pooled): the outcome is then
/// an error that says which (`TooLarge`, `Timeout`). Returns when the request went out, too.
pub(in crate::ingest) async fn send_shadow(
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
pub(in crate::ingest) fn merge_trailers(headers: &mut HeaderMap, trailers: &HeaderMap) {
    for (name, value) in trailers {
        headers.append(name.clone(), value.clone());
    }
}

/// Where one upstream's shadows go: the lean HTTP/1.1 client, or HTTP/2 (`protocol: h2`).
#[derive(Debug)]
pub(in crate::ingest) enum ShadowTarget {
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
