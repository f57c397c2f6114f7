//! The shadow policy's admission: whether a request is shadowed, decided the same way for every
//! source — the proxy's live requests and recorded or captured ones ([`super::recorded`]).
//! In order: the loop marker, the method (and per-route opt-in), the sample, overload
//! shedding, the declared body size, a `max_in_flight` permit, the candidate's circuit.

use super::Counters;
use super::circuit::Circuit;
use super::config::{MirrorPolicy, ShadowConfig};
use super::shadow::Admitted;
use crate::compare::SkipReason;
use arc_swap::ArcSwap;
use http::Method;
use http::header::{self, HeaderMap};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(super) struct Admission {
    cfg: ShadowConfig,
    /// `shadow.methods`, `routes` and `sample`: swapped by a reload, read without a lock.
    mirror: Arc<ArcSwap<MirrorPolicy>>,
    permits: Arc<Semaphore>,
    total: u32,
    circuit: Arc<Circuit>,
    counters: Arc<Counters>,
}

impl Admission {
    pub(super) fn new(cfg: &ShadowConfig, circuit: Arc<Circuit>, counters: Arc<Counters>) -> Self {
        let total = u32::try_from(cfg.max_in_flight).unwrap_or(u32::MAX >> 3);
        Self {
            cfg: cfg.clone(),
            mirror: Arc::new(ArcSwap::from_pointee(cfg.mirror_policy())),
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
            circuit,
            counters,
        }
    }

    /// The mirror policy's slot, for the reloader.
    pub(super) fn mirror(&self) -> Arc<ArcSwap<MirrorPolicy>> {
        self.mirror.clone()
    }

    /// Whether the method is mirrored on this route.
    fn mirrored(s: &MirrorPolicy, method: &Method, path: &str) -> bool {
        if let Some(r) = s
            .routes
            .iter()
            .find(|r| r.pattern.matches(method.as_str(), path))
        {
            return r.mirror;
        }
        s.methods.contains(method)
    }

    /// Everything but the permit and the circuit.
    fn eligible(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), SkipReason> {
        let s = &self.cfg;
        if headers.contains_key(&s.marker) {
            return Err(SkipReason::ShadowLoop);
        }
        let m = self.mirror.load();
        if !Self::mirrored(&m, method, path) {
            return Err(SkipReason::MethodNotMirrored);
        }
        if m.sample < 1.0 && rand::random::<f64>() >= m.sample {
            return Err(SkipReason::SampledOut);
        }
        if !self.counters.overload.admit() {
            return Err(SkipReason::Overload);
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > s.max_body_bytes as u64) {
            return Err(SkipReason::BodyTooLarge);
        }
        Ok(())
    }

    fn circuit(&self, permit: tokio::sync::OwnedSemaphorePermit) -> Result<Admitted, SkipReason> {
        let probe = self.circuit.admit().ok_or(SkipReason::CircuitOpen)?;
        Ok(Admitted { permit, probe })
    }

    /// Decides without waiting (the request path, live capture): over `max_in_flight` the
    /// shadow is skipped as `shadow_queue_full`.
    pub(super) fn admit(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Admitted, SkipReason> {
        self.eligible(method, path, headers)?;
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| SkipReason::ShadowQueueFull)?;
        self.circuit(permit)
    }

    /// Decides, waiting for a permit when `max_in_flight` are out (replay: offline, where a
    /// skipped exchange would be a lost test case rather than protection).
    pub(super) async fn admit_waiting(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Admitted, SkipReason> {
        self.eligible(method, path, headers)?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SkipReason::ShadowQueueFull)?;
        self.circuit(permit)
    }

    /// Resolves once no shadow holds a permit (every shadow finished).
    pub(super) async fn all_back(&self) {
        let _ = self.permits.clone().acquire_many_owned(self.total).await;
    }
}
