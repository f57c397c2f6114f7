//! What queries return: the published shapes of the admin API (docs/api.md) and the figures
//! `/metrics` renders. Plain data; built in `query.rs`.

use super::counts::Counts;
use super::gate;
use super::latency::LatencySummary;
use super::skew;
use super::wilson::wilson95;
use crate::compare::{DiffKind, SkipReason, VerdictKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub(super) fn of(c: &Counts) -> Self {
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
    /// Exchanges of acknowledged signatures (counted in the figures above too; docs/api.md).
    #[serde(default)]
    pub expected: super::triage::Expected,
}

/// One endpoint's line of the summary: its name and the same figures as the totals (flattened,
/// so the JSON shape is `{"endpoint": .., "exchanges": .., ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    pub endpoint: String,
    #[serde(flatten)]
    pub stats: Totals,
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
    /// Its acknowledgement, when QA said it is expected.
    #[serde(default)]
    pub acknowledgement: Option<super::ack::Acknowledgement>,
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

/// Upper bounds (seconds) of the paired-delta histogram (candidate − primary on one exchange):
/// the latency bounds mirrored below zero, and 0 itself, so "candidate slower" and "candidate
/// faster" fall on either side of one bucket bound.
pub const DELTA_BUCKETS_S: [f64; 27] = [
    -10.0, -5.0, -2.5, -1.0, -0.5, -0.25, -0.1, -0.05, -0.025, -0.01, -0.005, -0.0025, -0.001, 0.0,
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
    pub(super) fn of(h: &hdrhistogram::Histogram<u64>, sum_us: u64) -> Self {
        let mut b = Self::empty(&LATENCY_BUCKETS_S);
        b.add(h, 1);
        b.cumulate();
        b.sum_seconds = sum_us as f64 / 1e6;
        b
    }

    /// The signed paired delta from its two halves (see [`crate::stats::LatencySet`]): `pos`
    /// holds candidate − primary ≥ 0, `neg` holds primary − candidate > 0. HDR keeps no sum, so
    /// `_sum` is summed from the recorded values (each within the histogram's precision).
    pub(super) fn of_delta(
        pos: &hdrhistogram::Histogram<u64>,
        neg: &hdrhistogram::Histogram<u64>,
    ) -> Self {
        let mut b = Self::empty(&DELTA_BUCKETS_S);
        let sum_us = b.add(pos, 1) - b.add(neg, -1);
        b.cumulate();
        b.sum_seconds = sum_us as f64 / 1e6;
        b
    }

    fn empty(bounds: &[f64]) -> Self {
        HistogramBuckets {
            buckets: bounds.iter().map(|le| (*le, 0)).collect(),
            count: 0,
            sum_seconds: 0.0,
        }
    }

    /// Counts every value of `h`, times `sign`, into its bucket (not yet cumulative); returns
    /// the sum of the magnitudes in µs.
    fn add(&mut self, h: &hdrhistogram::Histogram<u64>, sign: i8) -> i128 {
        let mut sum = 0i128;
        for v in h.iter_recorded() {
            // A recorded HDR value stands for a small range; its representative is the range's
            // bottom, so a value exactly on a bound (1 ms) is counted as ≤ 1 ms.
            let us = h.lowest_equivalent(v.value_iterated_to());
            let s = f64::from(sign) * us as f64 / 1e6;
            if let Some(i) = self.buckets.iter().position(|(le, _)| s <= *le) {
                self.buckets[i].1 += v.count_at_value();
            }
            sum += i128::from(us) * i128::from(v.count_at_value());
        }
        self.count += h.len();
        sum
    }

    fn cumulate(&mut self) {
        for i in 1..self.buckets.len() {
            self.buckets[i].1 += self.buckets[i - 1].1;
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
    /// candidate − primary on the same exchange (both answered), buckets [`DELTA_BUCKETS_S`].
    pub delta: HistogramBuckets,
}
