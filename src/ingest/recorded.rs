//! A source of recorded pairs: a request and the primary's answer that someone else saw (a
//! recording for `replay`, a reassembled exchange for `capture --candidate`). Each request is
//! sent to the candidate (and the secondary) under the proxy's own shadow policy — the same
//! [`Admission`] (methods, routes, marker, sample, body size, `max_in_flight`, circuit), the
//! same header rules, timeout and memory budget ([`super::shadow`]) — and compared with the
//! **recorded** answer; the exchange then goes to the pipeline like the proxy's, so it feeds
//! the same statistics, sinks, admin API and UI.
//!
//! With [`RecordedConfig::primary`] set (a double run), the recorded answer is not used: the
//! request goes to that primary live, at the same moment as to the candidate.
//!
//! Two ways in: [`RecordedShadows::try_shadow`] never waits (live capture: a full in-flight
//! cap skips, counted, as on the proxy's request path); [`RecordedShadows::shadow`] waits for
//! a permit and for the exchange to be handed over (replay: offline, where a skip would be a
//! lost test case).

use super::Counters;
use super::admission::Admission;
use super::circuit::Circuit;
use super::config::{ShadowConfig, Upstream};
use super::grouping::{Grouper, GroupingConfig};
use super::resolve::{DNS_TTL, Resolver};
use super::shadow::{
    self, Admitted, InFlight, Outgoing, PrimarySize, ProbeGuard, Shadows, keep_answers, send_pair,
    send_shadow, settle_with_primary,
};
use super::tls::{TlsError, TlsSection};
use crate::compare::SkipReason;
use crate::compare::rules::RuleSet;
use crate::exchange::{self, Exchange, Request, Response, SendOffsets, Side, UpstreamError};
use crate::pipeline::Pipeline;
use crate::pipeline::pool::Job;
use http::Method;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

/// What a recorded-pair source runs with.
#[derive(Debug, Clone)]
pub struct RecordedConfig {
    pub candidate: Upstream,
    pub secondary: Option<Upstream>,
    /// A live primary (double run): the recorded answer is then ignored.
    pub primary: Option<Upstream>,
    pub shadow: ShadowConfig,
    /// For endpoint names.
    pub rules: Arc<RuleSet>,
    pub grouping: GroupingConfig,
    /// `capture` or `replay`: the exchanges' `source`.
    pub source: &'static str,
    /// `tls:` for `https://` upstreams.
    pub tls: TlsSection,
}

/// One recorded exchange to shadow.
#[derive(Debug, Clone)]
pub struct RecordedPair {
    /// When it was seen (the exchange keeps it).
    pub ts: SystemTime,
    pub request: Request,
    /// The primary's answer as seen; unused in a double run.
    pub primary: Response,
}

/// What became of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Handed to the comparison workers.
    Compared,
    /// Not compared, for this reason (counted and observed by the sinks).
    Skipped(SkipReason),
    /// Abandoned (the source is shutting down) or the live primary failed (`primary_error`).
    Lost,
}

/// Shadows recorded pairs and feeds the pipeline. Cheap to share (`Arc`).
pub struct RecordedShadows {
    shadows: Arc<Shadows>,
    admission: Admission,
    grouper: Grouper,
    /// A double run: the live primary is reached like a shadow (`Shadows::primary`).
    double: bool,
    source: &'static str,
}

impl RecordedShadows {
    /// Fails when an `https://` upstream's TLS settings cannot be used.
    pub fn new(cfg: RecordedConfig, pipeline: Arc<Pipeline>) -> Result<Arc<Self>, TlsError> {
        let counters = Arc::new(Counters {
            buffered: crate::pipeline::budget::Budget::new(cfg.shadow.max_buffered_bytes),
            ..Counters::default()
        });
        let circuit = Arc::new(Circuit::new(
            cfg.shadow.circuit.failures,
            cfg.shadow.circuit.cooldown,
        ));
        let resolver = Resolver::new(DNS_TTL);
        let primary = match &cfg.primary {
            Some(p) => Some(shadow::client(
                &cfg.shadow,
                "primary",
                p,
                &cfg.tls,
                &resolver,
            )?),
            None => None,
        };
        let admission = Admission::new(&cfg.shadow, circuit.clone(), counters.clone());
        // The pipeline's stage carries the rules (their templates) and the redaction, reloaded.
        let grouper = Grouper::live(pipeline.stages(), cfg.grouping.max_endpoints);
        let mut shadows = Shadows::new(
            &cfg.shadow,
            (&cfg.candidate, cfg.secondary.as_ref()),
            &cfg.tls,
            resolver,
            circuit,
            counters,
            pipeline,
        )?;
        let double = primary.is_some();
        shadows.primary = primary;
        Ok(Arc::new(Self {
            shadows: Arc::new(shadows),
            admission,
            grouper,
            double,
            source: cfg.source,
        }))
    }

    /// Live counters: shadows in flight, compared, skips by reason (`/metrics`).
    pub fn counters(&self) -> Arc<Counters> {
        self.shadows.counters.clone()
    }

    /// The candidate's circuit breaker.
    pub fn circuit(&self) -> Arc<Circuit> {
        self.shadows.circuit.clone()
    }

    /// Never waits: admitted pairs run in a spawned task (call from a tokio runtime); a full
    /// in-flight cap or any other refusal is counted and returned.
    pub fn try_shadow(self: &Arc<Self>, pair: RecordedPair) -> Result<(), SkipReason> {
        let (method, endpoint) = self.begin(&pair);
        let adm = match self
            .admission
            .admit(&method, &pair.request.path, &pair.request.headers)
        {
            Ok(a) => a,
            Err(r) => {
                self.skip(&endpoint, r, &pair);
                return Err(r);
            }
        };
        let me = self.clone();
        tokio::spawn(async move { me.run(adm, method, endpoint, pair, false).await });
        Ok(())
    }

    /// Waits for a permit (`shadow.max_in_flight`), then shadows the pair and hands the exchange
    /// over; returns what became of it.
    pub async fn shadow(&self, pair: RecordedPair) -> Handled {
        let (method, endpoint) = self.begin(&pair);
        match self
            .admission
            .admit_waiting(&method, &pair.request.path, &pair.request.headers)
            .await
        {
            Ok(adm) => self.run(adm, method, endpoint, pair, true).await,
            Err(r) => {
                self.skip(&endpoint, r, &pair);
                Handled::Skipped(r)
            }
        }
    }

    /// Waits up to `grace` for the shadows in flight, then abandons the rest.
    pub async fn drain(&self, grace: Duration) {
        if tokio::time::timeout(grace, self.admission.all_back())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.shadows.counters.in_flight(),
                "abandoning shadows still in flight at the shutdown deadline"
            );
            self.shadows.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), self.admission.all_back()).await;
        }
    }

    fn begin(&self, pair: &RecordedPair) -> (Method, Arc<str>) {
        self.shadows
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let method = Method::from_bytes(pair.request.method.as_bytes()).unwrap_or(Method::GET);
        let endpoint = self.grouper.endpoint(method.as_str(), &pair.request.path);
        (method, endpoint)
    }

    fn skip(&self, endpoint: &Arc<str>, r: SkipReason, pair: &RecordedPair) {
        let latency = (!self.double).then_some(pair.primary.latency);
        self.shadows.skip(endpoint, r, latency);
    }

    async fn run(
        &self,
        adm: Admitted,
        method: Method,
        endpoint: Arc<str>,
        pair: RecordedPair,
        wait: bool,
    ) -> Handled {
        let sh = &self.shadows;
        let _permit = adm.permit;
        sh.counters.shadow_started();
        let _gauge = InFlight(sh.counters.clone());
        let mut probe = ProbeGuard {
            circuit: sh.circuit.clone(),
            armed: adm.probe,
        };
        let cancel = sh.cancel.clone();
        tokio::select! {
            () = cancel.cancelled() => {
                sh.counters.shadows_abandoned.fetch_add(1, Ordering::Relaxed);
                Handled::Lost
            }
            h = self.compare(method, endpoint, pair, &mut probe, wait) => h,
        }
    }

    async fn compare(
        &self,
        method: Method,
        endpoint: Arc<str>,
        pair: RecordedPair,
        probe: &mut ProbeGuard,
        wait: bool,
    ) -> Handled {
        let sh = &self.shadows;
        let RecordedPair {
            ts,
            request,
            primary,
        } = pair;
        let path_and_query = match &request.query {
            Some(q) => format!("{}?{q}", request.path),
            None => request.path.clone(),
        };
        // A recorded answer over the cap could not have been compared by the proxy either
        // (`body_too_large`, whatever the candidate does): nothing is sent.
        if !self.double && primary.body.len() > sh.cfg.max_body_bytes {
            sh.skip(&endpoint, SkipReason::BodyTooLarge, Some(primary.latency));
            return Handled::Skipped(SkipReason::BodyTooLarge);
        }
        let out = Outgoing {
            endpoint: endpoint.clone(),
            method,
            path_and_query,
            headers: request.headers.clone(),
            body: request.body.clone(),
            trailers: None,
        };
        let live = async {
            match self.double {
                true => Some(send_shadow(sh, Side::Primary, &out).await),
                false => None,
            }
        };
        let (shadows, live) = tokio::join!(send_pair(sh, &out, probe), live);
        let mut held = sh.budget.reservation();
        let primary_size = match &live {
            Some((_, Ok((Err(UpstreamError::TooLarge(_)), _)))) => PrimarySize::TooLarge,
            Some((_, Ok((Ok(r), _)))) => PrimarySize::Len(r.body.len()),
            Some(_) => PrimarySize::Unknown,
            None => PrimarySize::Len(primary.body.len()),
        };
        settle_with_primary(sh, &shadows, primary_size, probe);
        let (primary, sends) = match live {
            None => (primary, None),
            Some((sent, Ok((Ok(r), ph)))) => {
                held.absorb(ph);
                let sec = shadows.sec.as_ref().map(|(t, _)| *t);
                (r, Some(SendOffsets::new(sent, shadows.cand_sent, sec)))
            }
            Some((_, Ok((Err(UpstreamError::TooLarge(_)), _)))) => {
                sh.skip(&endpoint, SkipReason::BodyTooLarge, None);
                return Handled::Skipped(SkipReason::BodyTooLarge);
            }
            Some((_, Ok((Err(e), _)))) => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let error = sh.pipeline.stage().redaction.quoted(&e.to_string());
                    tracing::debug!(side = "primary", endpoint = %endpoint, %error, "live primary failed");
                }
                sh.skip(&endpoint, SkipReason::PrimaryError, None);
                return Handled::Skipped(SkipReason::PrimaryError);
            }
            Some((_, Err(_))) => {
                sh.skip(&endpoint, SkipReason::MemoryBudget, None);
                return Handled::Skipped(SkipReason::MemoryBudget);
            }
        };
        let Some((candidate, secondary)) =
            keep_answers(sh, &endpoint, shadows, &mut held, Some(primary.latency))
        else {
            return Handled::Skipped(SkipReason::MemoryBudget);
        };
        let ex = Exchange {
            id: exchange::new_id(ts),
            ts,
            source: self.source,
            endpoint: endpoint.to_string(),
            request,
            primary,
            candidate,
            secondary,
            sends,
        };
        if !wait {
            shadow::submit(sh, ex, held);
            return Handled::Compared;
        }
        // Offline, a full comparison queue means "compare more slowly", not "lose the case":
        // the job is offered again once a worker has taken one (polled: the pool has no
        // asynchronous wake-up, and a replay runs at most `max_in_flight` of these).
        let mut job = Job::Compare(Box::new(ex), held);
        loop {
            match sh.pipeline.try_submit(job) {
                Ok(()) => {
                    sh.counters.compared.fetch_add(1, Ordering::Relaxed);
                    return Handled::Compared;
                }
                Err(j) => {
                    job = j;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }
}
