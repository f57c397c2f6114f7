//! Queries over [`Stats`]: the summary, the release gate, recent mismatches, signatures and the
//! `/metrics` snapshot. Each visits the endpoints one shard at a time and merges what it needs,
//! so queries cost what observations do not (overall figures are never recorded separately).

use super::counts::{Counts, FieldCounts};
use super::gate::{self, GateCounts, GateParams, GateReport, GateVerdict, judge};
use super::latency::{LatencySet, LatencySummary};
use super::report::{
    ClusterField, Divergence, EndpointMetrics, EndpointSummary, HistogramBuckets, MismatchQuery,
    SignatureSummary, Summary, Totals,
};
use super::store::{EndpointStats, Stats};
use super::triage::Expected;
use super::window::{Window, WindowError, format_duration};
use crate::compare::{SkipReason, VerdictKind};
use crate::event::{Event, format_ts};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One endpoint's (or the pool's) figures over a window.
pub(super) struct Agg {
    pub(super) counts: Counts,
    fields: FieldCounts,
    pub(super) latency: Option<LatencySet>,
    expected: Expected,
}

impl Agg {
    fn empty() -> Self {
        Agg {
            counts: Counts::default(),
            fields: FieldCounts::default(),
            latency: None,
            expected: Expected::default(),
        }
    }

    fn add_latency(&mut self, l: &LatencySet) {
        match &mut self.latency {
            Some(x) => x.add(l),
            None => self.latency = Some(l.clone()),
        }
    }

    fn totals(&self, top_fields: usize) -> Totals {
        Totals {
            exchanges: self.counts.verdicts.iter().sum(),
            verdicts: verdict_map(&self.counts),
            skip_reasons: skip_map(&self.counts),
            divergence: Divergence::of(&self.counts),
            latency: latency_summary(self.latency.as_ref()),
            top_fields: self.fields.top(top_fields),
            expected: self.expected,
        }
    }
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

impl Stats {
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

    /// Counts, fields and latency of one endpoint over a window.
    pub(super) fn aggregate(&self, ep: &EndpointStats, w: Window, now_epoch: u64) -> Agg {
        match w {
            Window::All => Agg {
                counts: ep.total,
                fields: ep.total_fields.clone(),
                latency: Some((*ep.total_latency).clone()),
                expected: Expected::default(),
            },
            Window::Last(d) => {
                let mut a = Agg::empty();
                for b in ep.ring.covering(d, self.bucket_ms, now_epoch) {
                    a.counts.add(&b.counts);
                    a.fields.add(&b.fields);
                    if let Some(l) = &b.latency {
                        a.add_latency(l);
                    }
                }
                a
            }
        }
    }

    /// Only the counts of one endpoint over a window (the gate and `/metrics` need no more).
    fn aggregate_counts(&self, ep: &EndpointStats, w: Window, now_epoch: u64) -> Counts {
        match w {
            Window::All => ep.total,
            Window::Last(d) => {
                let mut c = Counts::default();
                for b in ep.ring.covering(d, self.bucket_ms, now_epoch) {
                    c.add(&b.counts);
                }
                c
            }
        }
    }

    /// Per-endpoint aggregates over a window, sorted by endpoint.
    fn aggregates(&self, w: Window) -> BTreeMap<String, Agg> {
        let now_epoch = self.epoch_now();
        let mut out = BTreeMap::new();
        self.for_each_endpoint(|name, ep| {
            let mut a = self.aggregate(ep, w, now_epoch);
            a.expected = self.expected_of(name, ep, w, now_epoch);
            out.insert(name.to_string(), a);
        });
        out
    }

    /// The summary served by `/api/v1/summary` (shape in docs/api.md).
    pub fn summary(&self, w: Window, top_fields: usize) -> Summary {
        let aggs = self.aggregates(w);
        let mut total = Agg::empty();
        let mut endpoints = Vec::with_capacity(aggs.len());
        for (name, a) in aggs {
            total.counts.add(&a.counts);
            total.fields.add(&a.fields);
            total.expected.add(&a.expected);
            if let Some(l) = &a.latency {
                total.add_latency(l);
            }
            endpoints.push(EndpointSummary {
                stats: a.totals(top_fields),
                endpoint: name,
            });
        }
        Summary {
            window: w.label(),
            generated_at: format_ts(self.clock.now()),
            started_at: format_ts(self.started),
            totals: total.totals(top_fields),
            endpoints,
            send_skew: self.skew.summary(),
        }
    }

    /// Evaluates the release gate over a window (docs/api.md, "gate"; docs/gate.md).
    pub fn gate(&self, w: Window, p: &GateParams) -> GateReport {
        let now_epoch = self.epoch_now();
        let mut per: BTreeMap<String, (Counts, Expected)> = BTreeMap::new();
        self.for_each_endpoint(|name, ep| {
            if p.endpoint.as_deref().is_none_or(|e| e == name) {
                let x = self.expected_of(name, ep, w, now_epoch);
                per.insert(
                    name.to_string(),
                    (self.aggregate_counts(ep, w, now_epoch), x),
                );
            }
        });
        if let Some(e) = &p.endpoint {
            per.entry(e.clone()).or_default();
        }
        // Acknowledged divergent exchanges whose acknowledgement says so leave the divergence
        // (as a rule absorbing them would have made them matches); they stay in the samples.
        let counts = |c: &Counts, x: &Expected| GateCounts {
            divergent: c.divergent().saturating_sub(x.excluded_from_gate),
            samples: c.samples(),
        };
        let mut pool = Counts::default();
        let mut pool_x = Expected::default();
        let mut endpoints = Vec::new();
        let mut worst = GateVerdict::Pass;
        for (name, (c, x)) in &per {
            pool.add(c);
            pool_x.add(x);
            // An endpoint with nothing compared in the window (only skips — e.g. POSTs that are
            // never mirrored) has nothing to judge and must not hold the gate; it is listed, but
            // not counted in the worst-of, unless it is the endpoint asked for.
            let mut l = gate::line(name, counts(c, x), &p.rule_for(name));
            l.expected = *x;
            if c.samples() > 0 || p.endpoint.is_some() {
                worst = worst.max(l.verdict);
            }
            endpoints.push(l);
        }
        // Gating one endpoint: its own overrides apply to the pool (which is that endpoint).
        let pool_rule = p.pool_rule();
        let pc = counts(&pool, &pool_x);
        let pool_judged = judge(pc, &pool_rule);
        GateReport {
            verdict: worst.max(pool_judged.verdict),
            pool_verdict: pool_judged.verdict,
            method: pool_rule.method,
            divergence_rate: gate::rate(pc.divergent, pc.samples),
            divergent: pc.divergent,
            samples: pc.samples,
            expected: pool_x,
            ci95: pool_judged.ci95,
            max_divergence: pool_rule.max_divergence,
            min_samples: pool_rule.min_samples,
            min_samples_for: pool_rule.min_samples_for,
            window: w.label(),
            endpoints,
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
                    acknowledgement: self.acks.get(name, sig),
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
                delta: HistogramBuckets::of_delta(
                    &ep.total_latency.delta_pos,
                    &ep.total_latency.delta_neg,
                ),
            });
        });
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }
}
