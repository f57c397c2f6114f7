//! Divergence statistics: a [`Sink`] that counts verdicts, skip reasons and differing fields,
//! keeps latency histograms, clusters mismatches by signature and remembers recent events — per
//! endpoint and overall, over a sliding window and since start. The admin API reads it.
//!
//! Hot path: [`Stats::observe`] is called from the comparison workers. It takes one of
//! [`SHARDS`] mutexes (chosen by the endpoint's hash, so different endpoints rarely contend),
//! bumps a few counters and records into two latency sets (since start and the current window
//! bucket). Overall figures are never recorded separately: queries merge the endpoints, because
//! queries are rare and observations are not. Published events additionally take the ring's lock.
//!
//! Window: a ring of `window / bucket` buckets (default 15 × 1 minute). An observation lands in
//! the bucket of the clock's current time (not the exchange's timestamp: replayed traffic carries
//! old timestamps, and "the last 15 minutes" means of observation). A bucket from an older
//! rotation is reset when reused. A query for a window of `w` includes the current bucket and the
//! `ceil(w / bucket) − 1` before it, so the window is rounded up to whole buckets and the current
//! bucket is partial.
//!
//! Memory is bounded: at most `max_endpoints` endpoints (the rest fold into `OTHER`), at most
//! `max_fields` distinct fields per endpoint and bucket (the rest fold into `(other)`), at most
//! `max_signatures` clusters per endpoint, `recent_events` events. Window buckets allocate their
//! latency histograms lazily, at `window_significant_digits` (default 2: ≈ 10 KiB per histogram,
//! 40 KiB per endpoint-minute, so 15 minutes × 200 busy endpoints ≈ 120 MiB at worst); since-start
//! histograms use 3 significant digits (≈ 136 KiB per histogram).

mod gate;
mod interval;
mod latency;
pub mod noise;
pub mod publisher;
pub mod skew;
mod wilson;

pub use gate::{
    GateConfig, GateEndpoint, GateEndpointConfig, GateParams, GateReport, GateVerdict, judge,
};
pub use interval::{
    IntervalDelta, MessageHead, ParsedStats, STATS_SCHEMA, StatsMessage, StatsMessageError,
    WireField, WireLatency,
};
pub use latency::{LatencySet, LatencySummary, MAX_US, Percentiles, SignedPercentiles};
pub use wilson::{Z95, wilson, wilson95};

use crate::compare::{DiffKind, SkipReason, VerdictKind};
use crate::event::{Event, format_ts};
use crate::pipeline::{Observation, Sink};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Number of lock shards. A power of two well above the worker count keeps contention rare.
pub const SHARDS: usize = 32;

/// Where endpoints beyond `max_endpoints` are counted (the same name the grouping uses).
pub const OTHER_ENDPOINT: &str = "OTHER";
/// Where fields beyond `max_fields` are counted.
pub const OTHER_FIELD: &str = "(other)";

/// Time source, so window expiry is testable without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        let ms = start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Self {
            ms: AtomicU64::new(u64::try_from(ms).unwrap_or(u64::MAX)),
        }
    }

    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_add(add, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.ms.load(Ordering::SeqCst))
    }
}

/// Sizes and limits; every field has a documented default.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    /// Width of one window bucket. Default 1 minute.
    pub bucket: Duration,
    /// History kept for windowed queries (a multiple of `bucket`, rounded up). Default 15 minutes.
    pub window: Duration,
    /// Endpoints tracked separately; later ones are counted as `OTHER`. Default 201 (200 + OTHER,
    /// matching the grouping's cap upstream).
    pub max_endpoints: usize,
    /// Distinct (field) keys per endpoint and bucket (and since start). Default 256.
    pub max_fields: usize,
    /// Mismatch clusters per endpoint. Default 1000.
    pub max_signatures: usize,
    /// Fields listed per cluster. Default 32.
    pub max_cluster_fields: usize,
    /// Recent published events kept for `/api/v1/mismatches`. Default 10 000.
    pub recent_events: usize,
    /// Precision of the window buckets' histograms (1..=5). Default 2 (1% error), to bound memory.
    pub window_significant_digits: u8,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            bucket: Duration::from_secs(60),
            window: Duration::from_secs(15 * 60),
            max_endpoints: 201,
            max_fields: 256,
            max_signatures: 1000,
            max_cluster_fields: 32,
            recent_events: 10_000,
            window_significant_digits: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("invalid window {0:?}: write a duration (15m, 1h) or \"all\" (since start)")]
    Invalid(String),
    #[error(
        "window {asked} is longer than the history kept ({kept}); ask for at most {kept} or \"all\""
    )]
    TooLong { asked: String, kept: String },
}

/// The time span a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `d`, rounded up to whole buckets.
    Last(Duration),
    /// Since the process started.
    All,
}

impl Window {
    pub fn parse(s: &str) -> Result<Window, WindowError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(Window::All);
        }
        match crate::units::parse_duration(t) {
            Ok(d) if !d.is_zero() => Ok(Window::Last(d)),
            _ => Err(WindowError::Invalid(s.to_string())),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Window::All => "all".to_string(),
            Window::Last(d) => format_duration(*d),
        }
    }
}

/// `15m`, `1h`, `90s`: the shortest exact form in the units flags accept.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= n && ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

// ---------------------------------------------------------------------------------------------
// Internal state

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    verdicts: [u64; VerdictKind::ALL.len()],
    skips: [u64; SkipReason::ALL.len()],
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        for (a, b) in self.verdicts.iter_mut().zip(o.verdicts) {
            *a += b;
        }
        for (a, b) in self.skips.iter_mut().zip(o.skips) {
            *a += b;
        }
    }

    fn get(&self, k: VerdictKind) -> u64 {
        self.verdicts[k.index()]
    }

    fn divergent(&self) -> u64 {
        self.get(VerdictKind::Mismatch) + self.get(VerdictKind::CandidateError)
    }

    /// Every verdict but `skipped`.
    fn samples(&self) -> u64 {
        self.verdicts.iter().sum::<u64>() - self.get(VerdictKind::Skipped)
    }
}

/// Per (field, kind): exchanges in which it differed, and how many of those only as noise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FieldCount {
    raw: u64,
    noise: u64,
}

#[derive(Debug, Clone, Default)]
struct FieldCounts {
    map: HashMap<Box<str>, [FieldCount; DiffKind::ALL.len()]>,
}

impl FieldCounts {
    fn bump(&mut self, field: &str, kind: DiffKind, noise: bool, cap: usize) {
        let slot = match self.map.get_mut(field) {
            Some(s) => s,
            None => {
                let key = if self.map.len() < cap {
                    field
                } else {
                    OTHER_FIELD
                };
                self.map.entry(key.into()).or_default()
            }
        };
        let c = &mut slot[kind.index()];
        c.raw += 1;
        c.noise += u64::from(noise);
    }

    fn add(&mut self, o: &FieldCounts) {
        for (k, v) in &o.map {
            let slot = self.map.entry(k.clone()).or_default();
            for (a, b) in slot.iter_mut().zip(v) {
                a.raw += b.raw;
                a.noise += b.noise;
            }
        }
    }

    fn top(&self, n: usize) -> Vec<FieldStat> {
        let mut v: Vec<FieldStat> = self
            .map
            .iter()
            .flat_map(|(f, kinds)| {
                kinds
                    .iter()
                    .zip(DiffKind::ALL)
                    .filter(|(c, _)| c.raw > 0)
                    .map(|(c, k)| FieldStat {
                        field: f.to_string(),
                        kind: k,
                        count: c.raw,
                        noise: c.noise,
                    })
            })
            .collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.field.cmp(&b.field))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        v.truncate(n);
        v
    }
}

struct Bucket {
    /// Which rotation (time / bucket width) this bucket holds; `u64::MAX`: never used.
    epoch: u64,
    counts: Counts,
    fields: FieldCounts,
    latency: Option<Box<LatencySet>>,
}

impl Bucket {
    fn empty() -> Self {
        Self {
            epoch: u64::MAX,
            counts: Counts::default(),
            fields: FieldCounts::default(),
            latency: None,
        }
    }

    fn reset(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.counts = Counts::default();
        self.fields.map.clear();
        if let Some(l) = &mut self.latency {
            l.reset();
        }
    }
}

struct Cluster {
    fields: Vec<(String, DiffKind)>,
    verdict: VerdictKind,
    count: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
    example_id: Option<String>,
}

struct EndpointStats {
    total: Counts,
    total_fields: FieldCounts,
    total_latency: Box<LatencySet>,
    ring: Vec<Bucket>,
    clusters: HashMap<Box<str>, Cluster>,
    /// Mismatches whose signature could not get a cluster of its own (cap reached).
    clusters_dropped: u64,
}

struct Shard {
    endpoints: HashMap<Box<str>, EndpointStats>,
}

/// The statistics sink. Share it as `Arc<Stats>`: the pipeline observes into it and the admin
/// server reads it.
pub struct Stats {
    cfg: StatsConfig,
    clock: Arc<dyn Clock>,
    started: SystemTime,
    bucket_ms: u64,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
    endpoints: AtomicUsize,
    recent: Mutex<VecDeque<Arc<Event>>>,
    /// Process-wide, since start: the skew between the three sends of each exchange.
    skew: skew::SkewHistogram,
}

impl Stats {
    pub fn new(cfg: StatsConfig) -> Self {
        Self::with_clock(cfg, Arc::new(SystemClock))
    }

    pub fn with_clock(mut cfg: StatsConfig, clock: Arc<dyn Clock>) -> Self {
        if cfg.bucket < Duration::from_millis(1) {
            cfg.bucket = Duration::from_millis(1);
        }
        cfg.max_endpoints = cfg.max_endpoints.max(1);
        cfg.window_significant_digits = cfg.window_significant_digits.clamp(1, 5);
        let bucket_ms = u64::try_from(cfg.bucket.as_millis()).unwrap_or(u64::MAX);
        let started = clock.now();
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    endpoints: HashMap::new(),
                })
            })
            .collect();
        Self {
            cfg,
            clock,
            started,
            bucket_ms,
            hasher: Default::default(),
            shards,
            endpoints: AtomicUsize::new(0),
            recent: Mutex::new(VecDeque::new()),
            skew: skew::SkewHistogram::default(),
        }
    }

    /// The send skew histogram (since start, all endpoints).
    pub fn send_skew(&self) -> &skew::SkewHistogram {
        &self.skew
    }

    pub fn config(&self) -> &StatsConfig {
        &self.cfg
    }

    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Number of buckets in the ring.
    fn ring_len(&self) -> usize {
        let w = u64::try_from(self.cfg.window.as_millis()).unwrap_or(u64::MAX);
        usize::try_from(w.div_ceil(self.bucket_ms).max(1)).unwrap_or(1)
    }

    /// The longest window a query may ask for.
    pub fn retention(&self) -> Duration {
        Duration::from_millis(self.bucket_ms.saturating_mul(self.ring_len() as u64))
    }

    /// Checks a window against the history kept.
    pub fn check_window(&self, w: Window) -> Result<Window, WindowError> {
        match w {
            Window::Last(d) if d > self.retention() => Err(WindowError::TooLong {
                asked: format_duration(d),
                kept: format_duration(self.retention()),
            }),
            w => Ok(w),
        }
    }

    fn epoch_now(&self) -> u64 {
        let ms = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX) / self.bucket_ms
    }

    fn shard_of(&self, endpoint: &str) -> &Mutex<Shard> {
        let i = (self.hasher.hash_one(endpoint) as usize) % self.shards.len();
        &self.shards[i]
    }

    fn new_endpoint(&self) -> EndpointStats {
        EndpointStats {
            total: Counts::default(),
            total_fields: FieldCounts::default(),
            total_latency: Box::new(LatencySet::new(3)),
            ring: (0..self.ring_len()).map(|_| Bucket::empty()).collect(),
            clusters: HashMap::new(),
            clusters_dropped: 0,
        }
    }

    fn record(&self, ep: &mut EndpointStats, epoch: u64, now: SystemTime, o: &Observation<'_>) {
        let cfg = &self.cfg;
        let v = o.verdict;
        let vi = v.kind.index();
        let ri = v.skip_reason.map(SkipReason::index);
        let n = ep.ring.len();
        let b = &mut ep.ring[(epoch % n as u64) as usize];
        if b.epoch != epoch {
            b.reset(epoch);
        }
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
        if !v.differences.is_empty() {
            for (f, k, noise) in exchange_fields(&v.differences) {
                ep.total_fields.bump(f, k, noise, cfg.max_fields);
                b.fields.bump(f, k, noise, cfg.max_fields);
            }
        }
        if let Some(sig) = &v.signature {
            let id = o.event.map(|e| e.id.clone());
            self.bump_cluster(ep, sig, &v.differences, v.kind, now, id);
        }
    }

    /// Counts one exchange in the cluster of its signature (a new cluster while there is room).
    /// `seen` widens the cluster's first/last seen (events may arrive out of order when merged
    /// from several sidecars).
    fn bump_cluster(
        &self,
        ep: &mut EndpointStats,
        sig: &str,
        differences: &[crate::compare::Difference],
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

    /// Visits every endpoint under its shard's lock (one shard at a time).
    fn for_each_endpoint(&self, mut f: impl FnMut(&str, &EndpointStats)) {
        for s in self.shards.iter() {
            let g = s.lock();
            for (name, ep) in &g.endpoints {
                f(name, ep);
            }
        }
    }

    /// Counts, fields and latency of one endpoint over a window.
    fn aggregate(&self, ep: &EndpointStats, w: Window, now_epoch: u64) -> Agg {
        match w {
            Window::All => Agg {
                counts: ep.total,
                fields: ep.total_fields.clone(),
                latency: Some((*ep.total_latency).clone()),
            },
            Window::Last(d) => {
                let k = u64::try_from(d.as_millis())
                    .unwrap_or(u64::MAX)
                    .div_ceil(self.bucket_ms)
                    .max(1);
                let oldest = now_epoch.saturating_sub(k - 1);
                let mut a = Agg {
                    counts: Counts::default(),
                    fields: FieldCounts::default(),
                    latency: None,
                };
                for b in &ep.ring {
                    if b.epoch == u64::MAX || b.epoch < oldest || b.epoch > now_epoch {
                        continue;
                    }
                    a.counts.add(&b.counts);
                    a.fields.add(&b.fields);
                    if let Some(l) = &b.latency {
                        match &mut a.latency {
                            Some(x) => x.add(l),
                            None => a.latency = Some((**l).clone()),
                        }
                    }
                }
                a
            }
        }
    }

    /// Per-endpoint aggregates over a window, sorted by endpoint.
    fn aggregates(&self, w: Window) -> BTreeMap<String, Agg> {
        let now_epoch = self.epoch_now();
        let mut out = BTreeMap::new();
        self.for_each_endpoint(|name, ep| {
            out.insert(name.to_string(), self.aggregate(ep, w, now_epoch));
        });
        out
    }

    /// The summary served by `/api/v1/summary` (shape in docs/api.md).
    pub fn summary(&self, w: Window, top_fields: usize) -> Summary {
        let aggs = self.aggregates(w);
        let mut total = Agg {
            counts: Counts::default(),
            fields: FieldCounts::default(),
            latency: None,
        };
        let mut endpoints = Vec::with_capacity(aggs.len());
        for (name, a) in aggs {
            total.counts.add(&a.counts);
            total.fields.add(&a.fields);
            if let Some(l) = &a.latency {
                match &mut total.latency {
                    Some(x) => x.add(l),
                    None => total.latency = Some(l.clone()),
                }
            }
            endpoints.push(EndpointSummary {
                stats: Totals::of(&a, top_fields),
                endpoint: name,
            });
        }
        Summary {
            window: w.label(),
            generated_at: format_ts(self.clock.now()),
            started_at: format_ts(self.started),
            totals: Totals::of(&total, top_fields),
            endpoints,
            send_skew: self.skew.summary(),
        }
    }

    /// Evaluates the release gate over a window (docs/api.md, "gate").
    pub fn gate(&self, w: Window, p: &GateParams) -> GateReport {
        let now_epoch = self.epoch_now();
        let mut per: BTreeMap<String, Counts> = BTreeMap::new();
        self.for_each_endpoint(|name, ep| {
            if p.endpoint.as_deref().is_none_or(|e| e == name) {
                per.insert(name.to_string(), self.aggregate_counts(ep, w, now_epoch));
            }
        });
        if let Some(e) = &p.endpoint {
            per.entry(e.clone()).or_default();
        }
        let mut pool = Counts::default();
        let mut endpoints = Vec::new();
        let mut worst = GateVerdict::Pass;
        for (name, c) in &per {
            pool.add(c);
            let threshold = p
                .per_endpoint
                .get(name)
                .copied()
                .unwrap_or(p.max_divergence);
            // An endpoint with nothing compared in the window (only skips — e.g. POSTs that are
            // never mirrored) has nothing to judge and must not hold the gate; it is listed, but
            // not counted in the worst-of, unless it is the endpoint asked for.
            let l = gate::line(name, c.divergent(), c.samples(), threshold, p.min_samples);
            if c.samples() > 0 || p.endpoint.is_some() {
                worst = worst.max(l.verdict);
            }
            endpoints.push(l);
        }
        let (lo, hi) = wilson95(pool.divergent(), pool.samples());
        // Gating one endpoint: its own threshold applies to the pool (which is that endpoint).
        let pool_threshold = p
            .endpoint
            .as_ref()
            .and_then(|e| p.per_endpoint.get(e).copied())
            .unwrap_or(p.max_divergence);
        let pool_verdict = judge(
            pool.divergent(),
            pool.samples(),
            pool_threshold,
            p.min_samples,
        );
        GateReport {
            verdict: worst.max(pool_verdict),
            pool_verdict,
            divergence_rate: gate::rate(pool.divergent(), pool.samples()),
            divergent: pool.divergent(),
            samples: pool.samples(),
            ci95: [lo, hi],
            max_divergence: pool_threshold,
            min_samples: p.min_samples,
            window: w.label(),
            endpoints,
        }
    }

    fn aggregate_counts(&self, ep: &EndpointStats, w: Window, now_epoch: u64) -> Counts {
        match w {
            Window::All => ep.total,
            Window::Last(d) => {
                let k = u64::try_from(d.as_millis())
                    .unwrap_or(u64::MAX)
                    .div_ceil(self.bucket_ms)
                    .max(1);
                let oldest = now_epoch.saturating_sub(k - 1);
                let mut c = Counts::default();
                for b in &ep.ring {
                    if b.epoch != u64::MAX && b.epoch >= oldest && b.epoch <= now_epoch {
                        c.add(&b.counts);
                    }
                }
                c
            }
        }
    }

    /// Recent published events, newest first, filtered; `before`: only ids sorting before it
    /// (ids are ULID-like, so this pages backwards in time).
    pub fn mismatches(&self, q: &MismatchQuery) -> Vec<Arc<Event>> {
        let g = self.recent.lock();
        g.iter()
            .rev()
            .filter(|e| q.endpoint.as_deref().is_none_or(|x| x == e.endpoint))
            .filter(|e| {
                q.signature
                    .as_deref()
                    .is_none_or(|x| e.signature.as_deref() == Some(x))
            })
            .filter(|e| {
                q.field
                    .as_deref()
                    .is_none_or(|f| e.differences.iter().any(|d| d.field == f))
            })
            .filter(|e| q.verdict.is_none_or(|v| v == e.verdict))
            .filter(|e| q.before.as_deref().is_none_or(|b| e.id.as_str() < b))
            .take(q.limit)
            .cloned()
            .collect()
    }

    /// One recent event by id.
    pub fn event(&self, id: &str) -> Option<Arc<Event>> {
        self.recent
            .lock()
            .iter()
            .rev()
            .find(|e| e.id == id)
            .cloned()
    }

    /// Mismatch clusters (since start), most frequent first.
    pub fn signatures(&self, endpoint: Option<&str>) -> Vec<SignatureSummary> {
        let mut out = Vec::new();
        self.for_each_endpoint(|name, ep| {
            if endpoint.is_some_and(|e| e != name) {
                return;
            }
            for (sig, c) in &ep.clusters {
                out.push(SignatureSummary {
                    signature: sig.to_string(),
                    endpoint: name.to_string(),
                    verdict: c.verdict,
                    fields: c
                        .fields
                        .iter()
                        .map(|(f, k)| ClusterField {
                            field: f.clone(),
                            kind: *k,
                        })
                        .collect(),
                    count: c.count,
                    first_seen: format_ts(c.first_seen),
                    last_seen: format_ts(c.last_seen),
                    example_id: c.example_id.clone(),
                });
            }
        });
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.endpoint.cmp(&b.endpoint))
                .then_with(|| a.signature.cmp(&b.signature))
        });
        out
    }

    /// Since-start figures for `/metrics`, sorted by endpoint; `window` for the divergence gauge.
    pub fn metrics_snapshot(&self, window: Window) -> Vec<EndpointMetrics> {
        let now_epoch = self.epoch_now();
        let mut out = Vec::new();
        self.for_each_endpoint(|name, ep| {
            let w = self.aggregate_counts(ep, window, now_epoch);
            let mut verdicts = [0; VerdictKind::ALL.len()];
            let mut skips = [0; SkipReason::ALL.len()];
            for (i, k) in VerdictKind::ALL.iter().enumerate() {
                verdicts[i] = ep.total.get(*k);
            }
            skips.copy_from_slice(&ep.total.skips);
            out.push(EndpointMetrics {
                endpoint: name.to_string(),
                verdicts: VerdictKind::ALL.iter().copied().zip(verdicts).collect(),
                skips: SkipReason::ALL.iter().copied().zip(skips).collect(),
                window_divergent: w.divergent(),
                window_samples: w.samples(),
                primary: HistogramBuckets::of(
                    &ep.total_latency.primary,
                    ep.total_latency.primary_sum_us,
                ),
                candidate: HistogramBuckets::of(
                    &ep.total_latency.candidate,
                    ep.total_latency.candidate_sum_us,
                ),
            });
        });
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }

    /// Endpoints tracked (including `OTHER` once it is used).
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.load(Ordering::Relaxed)
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
        {
            let mut g = self.shard_of(o.endpoint).lock();
            if let Some(ep) = g.endpoints.get_mut(o.endpoint) {
                self.record(ep, epoch, now, o);
            } else {
                drop(g);
                self.record_new(o.endpoint, epoch, now, o);
            }
        }
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

impl Stats {
    /// First sight of an endpoint: admit it under the cap, or fold it into `OTHER`.
    #[cold]
    fn record_new(&self, endpoint: &str, epoch: u64, now: SystemTime, o: &Observation<'_>) {
        self.with_new_endpoint(endpoint, |ep| self.record(ep, epoch, now, o));
    }

    /// Runs `f` on an endpoint's statistics under its shard's lock, admitting the endpoint first
    /// when it is new (under the cap; beyond it, `f` runs on `OTHER`).
    fn with_endpoint(&self, endpoint: &str, f: impl FnOnce(&mut EndpointStats)) {
        let mut g = self.shard_of(endpoint).lock();
        if let Some(ep) = g.endpoints.get_mut(endpoint) {
            f(ep);
        } else {
            drop(g);
            self.with_new_endpoint(endpoint, f);
        }
    }

    #[cold]
    fn with_new_endpoint(&self, endpoint: &str, f: impl FnOnce(&mut EndpointStats)) {
        let admitted = self
            .endpoints
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                // Keep one slot for OTHER.
                (n + 1 < self.cfg.max_endpoints || endpoint == OTHER_ENDPOINT).then_some(n + 1)
            })
            .is_ok();
        let name = if admitted { endpoint } else { OTHER_ENDPOINT };
        let mut g = self.shard_of(name).lock();
        if !g.endpoints.contains_key(name) {
            if !admitted {
                // OTHER itself takes the reserved slot the first time.
                self.endpoints.fetch_add(1, Ordering::AcqRel);
            }
            g.endpoints.insert(name.into(), self.new_endpoint());
        } else if admitted {
            // Another worker admitted the same endpoint first: give the slot back.
            self.endpoints.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(ep) = g.endpoints.get_mut(name) {
            f(ep);
        }
    }
}

/// The (field, kind) pairs of one exchange, each once (an array field may differ at many
/// indices); a pair counts as noise only if every such difference was noise.
fn exchange_fields(differences: &[crate::compare::Difference]) -> Vec<(&str, DiffKind, bool)> {
    let mut seen: Vec<(&str, DiffKind, bool)> = Vec::with_capacity(differences.len());
    for d in differences {
        match seen
            .iter_mut()
            .find(|(f, k, _)| *k == d.kind && *f == d.field)
        {
            Some(s) => s.2 &= d.noise,
            None => seen.push((&d.field, d.kind, d.noise)),
        }
    }
    seen
}

struct Agg {
    counts: Counts,
    fields: FieldCounts,
    latency: Option<LatencySet>,
}

fn verdict_map(c: &Counts) -> BTreeMap<String, u64> {
    VerdictKind::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), c.get(*k)))
        .collect()
}

fn skip_map(c: &Counts) -> BTreeMap<String, u64> {
    SkipReason::ALL
        .iter()
        .zip(c.skips)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str().to_string(), n))
        .collect()
}

fn latency_summary(l: Option<&LatencySet>) -> LatencySummary {
    match l {
        Some(l) => l.summary(),
        None => LatencySet::new(1).summary(),
    }
}

// ---------------------------------------------------------------------------------------------
// Published shapes (docs/api.md)

/// A divergence rate with its sample count and 95% Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// (mismatch + candidate_error) / samples; `null` with no samples.
    pub rate: Option<f64>,
    pub divergent: u64,
    /// All verdicts except `skipped`.
    pub samples: u64,
    pub ci95: [f64; 2],
}

impl Divergence {
    fn of(c: &Counts) -> Self {
        let (lo, hi) = wilson95(c.divergent(), c.samples());
        Divergence {
            rate: gate::rate(c.divergent(), c.samples()),
            divergent: c.divergent(),
            samples: c.samples(),
            ci95: [lo, hi],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldStat {
    pub field: String,
    pub kind: DiffKind,
    /// Exchanges in which this (field, kind) differed.
    pub count: u64,
    /// Of those, how many only as noise (also differed primary vs secondary).
    pub noise: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub exchanges: u64,
    pub verdicts: BTreeMap<String, u64>,
    pub skip_reasons: BTreeMap<String, u64>,
    pub divergence: Divergence,
    pub latency: LatencySummary,
    pub top_fields: Vec<FieldStat>,
}

/// One endpoint's line of the summary: its name and the same figures as the totals (flattened,
/// so the JSON shape is `{"endpoint": .., "exchanges": .., ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    pub endpoint: String,
    #[serde(flatten)]
    pub stats: Totals,
}

impl Totals {
    fn of(a: &Agg, top_fields: usize) -> Totals {
        Totals {
            exchanges: a.counts.verdicts.iter().sum(),
            verdicts: verdict_map(&a.counts),
            skip_reasons: skip_map(&a.counts),
            divergence: Divergence::of(&a.counts),
            latency: latency_summary(a.latency.as_ref()),
            top_fields: a.fields.top(top_fields),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub window: String,
    pub generated_at: String,
    pub started_at: String,
    pub totals: Totals,
    pub endpoints: Vec<EndpointSummary>,
    /// Skew between the primary, candidate and secondary sends, since start (whatever the
    /// window); absent until an exchange was shadowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_skew: Option<skew::SkewSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterField {
    pub field: String,
    pub kind: DiffKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureSummary {
    pub signature: String,
    pub endpoint: String,
    pub verdict: VerdictKind,
    pub fields: Vec<ClusterField>,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub example_id: Option<String>,
}

/// Filters of `/api/v1/mismatches`.
#[derive(Debug, Clone)]
pub struct MismatchQuery {
    pub endpoint: Option<String>,
    pub signature: Option<String>,
    /// Events with a difference on this field (the `field` pattern, e.g. `/items/*/price`).
    pub field: Option<String>,
    pub verdict: Option<VerdictKind>,
    pub before: Option<String>,
    pub limit: usize,
}

impl Default for MismatchQuery {
    fn default() -> Self {
        Self {
            endpoint: None,
            signature: None,
            field: None,
            verdict: None,
            before: None,
            limit: 50,
        }
    }
}

/// Upper bounds (seconds) of the Prometheus latency histogram: 1 ms … 10 s.
pub const LATENCY_BUCKETS_S: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram derived from an HDR one: cumulative counts per `le`, plus `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramBuckets {
    /// (le in seconds, cumulative count); `+Inf` is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl HistogramBuckets {
    fn of(h: &hdrhistogram::Histogram<u64>, sum_us: u64) -> Self {
        let mut cum = vec![0u64; LATENCY_BUCKETS_S.len()];
        for v in h.iter_recorded() {
            // A recorded HDR value stands for a small range; its representative is the range's
            // top, so a value exactly on a bound (1 ms) is counted as ≤ 1 ms.
            let us = h.lowest_equivalent(v.value_iterated_to());
            let s = us as f64 / 1e6;
            if let Some(i) = LATENCY_BUCKETS_S.iter().position(|le| s <= *le) {
                cum[i] += v.count_at_value();
            }
        }
        for i in 1..cum.len() {
            cum[i] += cum[i - 1];
        }
        HistogramBuckets {
            buckets: LATENCY_BUCKETS_S.iter().copied().zip(cum).collect(),
            count: h.len(),
            sum_seconds: sum_us as f64 / 1e6,
        }
    }
}

/// Since-start figures of one endpoint, for `/metrics`.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    pub endpoint: String,
    pub verdicts: Vec<(VerdictKind, u64)>,
    pub skips: Vec<(SkipReason, u64)>,
    /// Divergent and compared exchanges in the gauge's window.
    pub window_divergent: u64,
    pub window_samples: u64,
    pub primary: HistogramBuckets,
    pub candidate: HistogramBuckets,
}

#[cfg(test)]
mod tests;
