//! The statistics store: [`Stats`], its per-endpoint state, and recording — the [`Sink`] the
//! comparison workers observe into, plus the clustering of mismatches by signature and the ring
//! of recent events. Queries over it are in `query.rs`; merging other processes' figures (the
//! fleet aggregator) in `interval.rs`.
//!
//! Hot path: [`Sink::observe`] takes the lock of one shard of the [`EndpointMap`] (chosen by the
//! endpoint's hash, so different endpoints rarely contend), bumps a few counters and records
//! into two latency sets (since start and the current window bucket). Overall figures are never
//! recorded separately: queries merge the endpoints, because queries are rare and observations
//! are not. Published events additionally take the recent ring's lock.

use super::ack::Acknowledgements;
use super::config::StatsConfig;
use super::counts::{Counts, FieldCounts, exchange_fields, published_differences};
use super::endpoint_map::EndpointMap;
use super::latency::LatencySet;
use super::skew;
use super::window::{Clock, Ring, SystemClock, buckets_in, epoch_of};
use crate::compare::{DiffKind, Difference, SkipReason, VerdictKind};
use crate::event::Event;
use crate::pipeline::{Observation, Sink};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) struct Cluster {
    pub(super) fields: Vec<(String, DiffKind)>,
    pub(super) verdict: VerdictKind,
    pub(super) count: u64,
    pub(super) first_seen: SystemTime,
    pub(super) last_seen: SystemTime,
    pub(super) example_id: Option<String>,
}

/// Everything kept for one endpoint.
pub(super) struct EndpointStats {
    pub(super) total: Counts,
    pub(super) total_fields: FieldCounts,
    pub(super) total_latency: Box<LatencySet>,
    pub(super) ring: Ring,
    pub(super) clusters: HashMap<Box<str>, Cluster>,
    /// Mismatches whose signature could not get a cluster of its own (cap reached).
    pub(super) clusters_dropped: u64,
}

/// The statistics sink. Share it as `Arc<Stats>`: the pipeline observes into it and the admin
/// server reads it.
pub struct Stats {
    pub(super) cfg: StatsConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) started: SystemTime,
    pub(super) bucket_ms: u64,
    pub(super) endpoints: EndpointMap<EndpointStats>,
    pub(super) recent: Mutex<VecDeque<Arc<Event>>>,
    /// Process-wide, since start: the skew between the three sends of each exchange.
    pub(super) skew: skew::SkewHistogram,
    /// Acknowledged signatures, counted as expected (`triage`).
    pub(super) acks: Arc<Acknowledgements>,
}

impl Stats {
    /// Statistics on the wall clock. `max_endpoints` is the grouping's cap
    /// (`grouping.max_endpoints`): that many endpoints are tracked on their own, later ones
    /// together as `OTHER` (which does not count against it).
    pub fn new(cfg: StatsConfig, max_endpoints: usize) -> Self {
        Self::with_clock(cfg, max_endpoints, Arc::new(SystemClock))
    }

    /// As [`Stats::new`], on the given clock (tests move a [`super::ManualClock`]).
    pub fn with_clock(mut cfg: StatsConfig, max_endpoints: usize, clock: Arc<dyn Clock>) -> Self {
        if cfg.bucket < Duration::from_millis(1) {
            cfg.bucket = Duration::from_millis(1);
        }
        cfg.window_significant_digits = cfg.window_significant_digits.clamp(1, 5);
        let bucket_ms = u64::try_from(cfg.bucket.as_millis()).unwrap_or(u64::MAX);
        let started = clock.now();
        Self {
            cfg,
            clock,
            started,
            bucket_ms,
            endpoints: EndpointMap::new(max_endpoints),
            recent: Mutex::new(VecDeque::new()),
            skew: skew::SkewHistogram::default(),
            acks: Arc::new(Acknowledgements::in_memory()),
        }
    }

    /// Counts the given acknowledgements as expected (default: none, in memory).
    pub fn with_acknowledgements(mut self, acks: Arc<Acknowledgements>) -> Self {
        self.acks = acks;
        self
    }

    /// The send skew histogram (since start, all endpoints).
    pub fn send_skew(&self) -> &skew::SkewHistogram {
        &self.skew
    }

    pub fn config(&self) -> &StatsConfig {
        &self.cfg
    }

    /// Endpoints tracked on their own at most; later ones are counted as `OTHER`.
    pub fn max_endpoints(&self) -> usize {
        self.endpoints.max_endpoints()
    }

    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Endpoints tracked (including `OTHER` once it is used).
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Number of buckets in the ring.
    pub(super) fn ring_len(&self) -> usize {
        usize::try_from(buckets_in(self.cfg.window, self.bucket_ms)).unwrap_or(1)
    }

    pub(super) fn epoch_now(&self) -> u64 {
        epoch_of(self.clock.now(), self.bucket_ms)
    }

    fn new_endpoint(&self) -> EndpointStats {
        EndpointStats {
            total: Counts::default(),
            total_fields: FieldCounts::default(),
            total_latency: Box::new(LatencySet::new(3)),
            ring: Ring::new(self.ring_len()),
            clusters: HashMap::new(),
            clusters_dropped: 0,
        }
    }

    /// Runs `f` on an endpoint's statistics under its shard's lock, admitting the endpoint first
    /// when it is new (under the cap; beyond it, `f` runs on `OTHER`).
    pub(super) fn with_endpoint(&self, endpoint: &str, f: impl FnOnce(&mut EndpointStats)) {
        self.endpoints
            .with_endpoint(endpoint, || self.new_endpoint(), f);
    }

    /// Visits every endpoint under its shard's lock (one shard at a time).
    pub(super) fn for_each_endpoint(&self, f: impl FnMut(&str, &EndpointStats)) {
        self.endpoints.for_each(f);
    }

    fn record(&self, ep: &mut EndpointStats, epoch: u64, now: SystemTime, o: &Observation<'_>) {
        let cfg = &self.cfg;
        let v = o.verdict;
        let vi = v.kind.index();
        let ri = v.skip_reason.map(SkipReason::index);
        let b = ep.ring.current(epoch);
        ep.total.verdicts[vi] += 1;
        b.counts.verdicts[vi] += 1;
        if let Some(ri) = ri {
            ep.total.skips[ri] += 1;
            b.counts.skips[ri] += 1;
        }
        if o.primary_latency.is_some() || o.candidate_latency.is_some() {
            ep.total_latency
                .record(o.primary_latency, o.candidate_latency);
            b.latency
                .get_or_insert_with(|| Box::new(LatencySet::new(cfg.window_significant_digits)))
                .record(o.primary_latency, o.candidate_latency);
        }
        let differences = published_differences(o);
        if !differences.is_empty() {
            for (f, k, noise) in exchange_fields(differences) {
                ep.total_fields.bump(f, k, noise, cfg.max_fields);
                b.fields.bump(f, k, noise, cfg.max_fields);
            }
        }
        if let Some(sig) = &v.signature {
            bump_signature(
                &mut ep.ring.current(epoch).signatures,
                sig,
                cfg.max_signatures,
            );
            let id = o.event.map(|e| e.id.clone());
            self.bump_cluster(ep, sig, differences, v.kind, now, id);
        }
    }

    /// Counts one exchange in the cluster of its signature (a new cluster while there is room).
    /// `seen` widens the cluster's first/last seen (events may arrive out of order when merged
    /// from several sidecars).
    pub(super) fn bump_cluster(
        &self,
        ep: &mut EndpointStats,
        sig: &str,
        differences: &[Difference],
        verdict: VerdictKind,
        seen: SystemTime,
        id: Option<String>,
    ) {
        let cfg = &self.cfg;
        let room = ep.clusters.len() < cfg.max_signatures;
        match ep.clusters.get_mut(sig) {
            Some(c) => {
                c.count += 1;
                c.last_seen = c.last_seen.max(seen);
                c.first_seen = c.first_seen.min(seen);
                if c.example_id.is_none() {
                    c.example_id = id;
                }
            }
            None if room => {
                let mut fields: Vec<(String, DiffKind)> = differences
                    .iter()
                    .map(|d| (d.field.clone(), d.kind))
                    .collect();
                fields.sort_unstable();
                fields.dedup();
                fields.truncate(cfg.max_cluster_fields);
                ep.clusters.insert(
                    sig.into(),
                    Cluster {
                        fields,
                        verdict,
                        count: 1,
                        first_seen: seen,
                        last_seen: seen,
                        example_id: id,
                    },
                );
            }
            None => ep.clusters_dropped += 1,
        }
    }
}

/// Counts one exchange of `sig` in a window bucket, while the bucket has room for it.
pub(super) fn bump_signature(m: &mut HashMap<Box<str>, u64>, sig: &str, max: usize) {
    if let Some(n) = m.get_mut(sig) {
        *n += 1;
    } else if m.len() < max {
        m.insert(sig.into(), 1);
    }
}

impl Sink for Stats {
    fn observe(&self, o: &Observation<'_>) {
        let epoch = self.epoch_now();
        // The cluster timestamps need wall time only for signatures; computing it from the epoch
        // would lose precision, and the clock call is cheap.
        let now = if o.verdict.signature.is_some() {
            self.clock.now()
        } else {
            UNIX_EPOCH
        };
        self.with_endpoint(o.endpoint, |ep| self.record(ep, epoch, now, o));
        if let Some(d) = o.send_skew {
            self.skew.record(d);
        }
        if let Some(ev) = o.event {
            let mut r = self.recent.lock();
            if r.len() >= self.cfg.recent_events {
                r.pop_front();
            }
            if self.cfg.recent_events > 0 {
                r.push_back(Arc::clone(ev));
            }
        }
    }
}
