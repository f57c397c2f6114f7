//! Latency histograms: primary, candidate and the paired delta (candidate − primary on the same
//! request), in microseconds, 1 µs – 60 s.
//!
//! The delta can be negative, and an HDR histogram only holds non-negative values, so it is kept
//! as **two histograms**: `delta_pos` holds `c − p` when the candidate was slower or equal, and
//! `delta_neg` holds `p − c` when it was faster. Quantiles of the signed distribution are read
//! across both (see [`LatencySet::delta_quantile`]). Offsetting by 60 s would have cost the
//! resolution near zero, which is where most deltas live.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Largest value tracked, in µs; larger values are recorded as this (saturating).
pub const MAX_US: u64 = 60_000_000;

/// Three (four, with the split delta) histograms recorded together.
#[derive(Clone)]
pub struct LatencySet {
    pub primary: Histogram<u64>,
    pub candidate: Histogram<u64>,
    pub delta_pos: Histogram<u64>,
    pub delta_neg: Histogram<u64>,
    /// Exact sums (µs), because Prometheus histograms carry a `_sum` and HDR keeps none.
    pub primary_sum_us: u64,
    pub candidate_sum_us: u64,
}

fn hist(sigfig: u8) -> Histogram<u64> {
    // `new_with_bounds` fails only for low < 1, high < 2 × low or more than 5 significant digits:
    // the bounds are constants and `sigfig` is clamped, so this cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_US, sigfig.clamp(1, 5))
        .expect("constant histogram bounds are valid")
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(MAX_US)
}

impl LatencySet {
    /// `sigfig`: significant decimal digits (3 since start, 2 in window buckets — see
    /// [`crate::stats::StatsConfig::window_significant_digits`]).
    pub fn new(sigfig: u8) -> Self {
        Self {
            primary: hist(sigfig),
            candidate: hist(sigfig),
            delta_pos: hist(sigfig),
            delta_neg: hist(sigfig),
            primary_sum_us: 0,
            candidate_sum_us: 0,
        }
    }

    /// Records one exchange's latencies; the delta only when both sides answered.
    #[inline]
    pub fn record(&mut self, primary: Option<Duration>, candidate: Option<Duration>) {
        let p = primary.map(us);
        let c = candidate.map(us);
        if let Some(p) = p {
            self.primary.saturating_record(p);
            self.primary_sum_us = self.primary_sum_us.saturating_add(p);
        }
        if let Some(c) = c {
            self.candidate.saturating_record(c);
            self.candidate_sum_us = self.candidate_sum_us.saturating_add(c);
        }
        if let (Some(p), Some(c)) = (p, c) {
            if c >= p {
                self.delta_pos.saturating_record(c - p);
            } else {
                self.delta_neg.saturating_record(p - c);
            }
        }
    }

    pub fn reset(&mut self) {
        self.primary.reset();
        self.candidate.reset();
        self.delta_pos.reset();
        self.delta_neg.reset();
        self.primary_sum_us = 0;
        self.candidate_sum_us = 0;
    }

    /// Adds another set into this one (histograms of other precisions are re-recorded).
    pub fn add(&mut self, o: &LatencySet) {
        // Both sides use the same bounds, so `add` cannot fail on range; ignore the impossible.
        let _ = self.primary.add(&o.primary);
        let _ = self.candidate.add(&o.candidate);
        let _ = self.delta_pos.add(&o.delta_pos);
        let _ = self.delta_neg.add(&o.delta_neg);
        self.primary_sum_us = self.primary_sum_us.saturating_add(o.primary_sum_us);
        self.candidate_sum_us = self.candidate_sum_us.saturating_add(o.candidate_sum_us);
    }

    /// Quantile `q` (0..=1) of the signed delta, in µs.
    pub fn delta_quantile(&self, q: f64) -> Option<i64> {
        let (neg, pos) = (self.delta_neg.len(), self.delta_pos.len());
        let n = neg + pos;
        if n == 0 {
            return None;
        }
        // Sorted ascending, the signed distribution is the negatives from the most negative up,
        // then the positives. Rank r (1-based) of quantile q, as HDR computes it.
        let r = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        if r <= neg {
            // r-th smallest signed value = (neg − r + 1)-th largest magnitude among the negatives.
            let q_neg = (neg - r + 1) as f64 / neg as f64;
            Some(-(self.delta_neg.value_at_quantile(q_neg) as i64))
        } else {
            let q_pos = (r - neg) as f64 / pos as f64;
            Some(self.delta_pos.value_at_quantile(q_pos) as i64)
        }
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            primary: Percentiles::of(&self.primary),
            candidate: Percentiles::of(&self.candidate),
            delta: self.delta_percentiles(),
        }
    }

    fn delta_percentiles(&self) -> SignedPercentiles {
        let count = self.delta_neg.len() + self.delta_pos.len();
        let min = if !self.delta_neg.is_empty() {
            Some(-(self.delta_neg.max() as i64))
        } else if !self.delta_pos.is_empty() {
            Some(self.delta_pos.min() as i64)
        } else {
            None
        };
        let max = if !self.delta_pos.is_empty() {
            Some(self.delta_pos.max() as i64)
        } else if !self.delta_neg.is_empty() {
            Some(-(self.delta_neg.min() as i64))
        } else {
            None
        };
        SignedPercentiles {
            count,
            min_us: min,
            p50_us: self.delta_quantile(0.5),
            p90_us: self.delta_quantile(0.9),
            p99_us: self.delta_quantile(0.99),
            max_us: max,
        }
    }
}

/// `p50/p90/p99/max` of one side, in µs; `null` when nothing was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: Option<u64>,
    pub p90_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let some = |v: u64| (!h.is_empty()).then_some(v);
        Percentiles {
            count: h.len(),
            p50_us: some(h.value_at_quantile(0.5)),
            p90_us: some(h.value_at_quantile(0.9)),
            p99_us: some(h.value_at_quantile(0.99)),
            max_us: some(h.max()),
        }
    }
}

/// Percentiles of the signed delta (candidate − primary), in µs; negative: candidate faster.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SignedPercentiles {
    pub count: u64,
    pub min_us: Option<i64>,
    pub p50_us: Option<i64>,
    pub p90_us: Option<i64>,
    pub p99_us: Option<i64>,
    pub max_us: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub primary: Percentiles,
    pub candidate: Percentiles,
    pub delta: SignedPercentiles,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn signed_delta_quantiles_span_both_histograms() {
        let mut s = LatencySet::new(3);
        // Deltas: −3 ms, −1 ms, +2 ms, +4 ms, +10 ms.
        for (p, c) in [(10, 7), (10, 9), (10, 12), (10, 14), (10, 20)] {
            s.record(ms(p), ms(c));
        }
        let d = s.summary().delta;
        assert_eq!(d.count, 5);
        // HDR reports the top of a value's equivalent range (±0.1% at 3 digits).
        assert!(
            (-3003..=-3000).contains(&d.min_us.unwrap_or_default()),
            "{d:?}"
        );
        assert!(
            (10_000..=10_010).contains(&d.max_us.unwrap_or_default()),
            "{d:?}"
        );
        // Median of the 5 signed values is the 3rd: +2 ms (HDR equivalent range: ±0.1%).
        let p50 = d.p50_us.unwrap_or_default();
        assert!((1998..=2002).contains(&p50), "{p50}");
        assert!(s.delta_quantile(0.2).unwrap_or_default() < -2900);
        assert!(s.delta_quantile(0.4).unwrap_or_default() < -900);
        assert!(s.delta_quantile(0.4).unwrap_or_default() > -1100);
    }

    #[test]
    fn saturates_above_sixty_seconds_and_skips_missing_sides() {
        let mut s = LatencySet::new(3);
        s.record(Some(Duration::from_secs(600)), None);
        assert_eq!(s.primary.len(), 1);
        assert!(s.primary.max() >= MAX_US - MAX_US / 1000);
        assert_eq!(s.candidate.len(), 0);
        assert_eq!(s.delta_pos.len() + s.delta_neg.len(), 0);
    }
}
