//! What the review UI's charts draw (`GET /api/v1/charts`, docs/api.md): per endpoint, the
//! primary's and the candidate's latency distributions on shared bins, the paired delta's
//! quantiles, and the divergence of each window bucket with its Wilson interval.
//!
//! Bins are read off the HDR histograms, not re-sampled: every recorded value (at the
//! histogram's precision) falls in exactly one bin, so a side's bin counts add up to its count.
//! They are log-spaced between the smallest and the largest latency either side recorded — the
//! range where the two distributions can be told apart — and shared, so the two overlay.

use super::gate;
use super::latency::LatencySet;
use super::store::Stats;
use super::wilson::wilson95;
use super::window::{Window, buckets_in};
use crate::event::format_ts;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

/// Bins per latency chart.
pub const LATENCY_BINS: usize = 40;
/// Quantiles of the paired delta: 0, 2%, …, 100% (the minimum and the maximum included).
pub const DELTA_STEPS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charts {
    pub window: String,
    pub generated_at: String,
    /// Width of one divergence point.
    pub bucket_ms: u64,
    pub endpoints: Vec<EndpointCharts>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointCharts {
    pub endpoint: String,
    pub latency: LatencyBins,
    pub delta: DeltaQuantiles,
    pub divergence: Vec<DivergencePoint>,
}

/// Both sides' latency counts on the same log-spaced bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyBins {
    pub primary_count: u64,
    pub candidate_count: u64,
    pub bins: Vec<LatencyBin>,
}

/// Values from `lo_us` (inclusive) to `hi_us` (exclusive; inclusive for the last bin).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyBin {
    pub lo_us: u64,
    pub hi_us: u64,
    pub primary: u64,
    pub candidate: u64,
}

/// The signed delta (candidate − primary on the same request) at evenly spaced quantiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaQuantiles {
    pub count: u64,
    pub quantiles: Vec<DeltaQuantile>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaQuantile {
    pub q: f64,
    pub us: i64,
}

/// One window bucket: its start, its divergence and the 95% Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DivergencePoint {
    pub start: String,
    pub divergent: u64,
    pub samples: u64,
    pub rate: Option<f64>,
    pub ci95: [f64; 2],
}

impl Stats {
    /// The charts over window `w`, for one endpoint or all.
    pub fn charts(&self, w: Window, endpoint: Option<&str>) -> Charts {
        let now_epoch = self.epoch_now();
        // The series covers the window's buckets; "all" covers the whole ring.
        let span = match w {
            Window::Last(d) => d,
            Window::All => self.retention(),
        };
        let first = now_epoch.saturating_sub(buckets_in(span, self.bucket_ms) - 1);
        let mut out = Vec::new();
        self.for_each_endpoint(|name, ep| {
            if endpoint.is_some_and(|e| e != name) {
                return;
            }
            let agg = self.aggregate(ep, w, now_epoch);
            let mut per: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for b in ep.ring.covering(span, self.bucket_ms, now_epoch) {
                per.insert(b.epoch, (b.counts.divergent(), b.counts.samples()));
            }
            let divergence = (first..=now_epoch)
                .map(|e| {
                    let (divergent, samples) = per.get(&e).copied().unwrap_or((0, 0));
                    let (lo, hi) = wilson95(divergent, samples);
                    DivergencePoint {
                        start: format_ts(
                            UNIX_EPOCH + Duration::from_millis(e.saturating_mul(self.bucket_ms)),
                        ),
                        divergent,
                        samples,
                        rate: gate::rate(divergent, samples),
                        ci95: [lo, hi],
                    }
                })
                .collect();
            let empty = LatencySet::new(1);
            let l = agg.latency.as_ref().unwrap_or(&empty);
            out.push(EndpointCharts {
                endpoint: name.to_string(),
                latency: latency_bins(&l.primary, &l.candidate, LATENCY_BINS),
                delta: delta_quantiles(l, DELTA_STEPS),
                divergence,
            });
        });
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        Charts {
            window: w.label(),
            generated_at: format_ts(self.clock.now()),
            bucket_ms: self.bucket_ms,
            endpoints: out,
        }
    }
}

/// `n` log-spaced bins from the smaller minimum to the larger maximum of `p` and `c`.
fn latency_bins(p: &Histogram<u64>, c: &Histogram<u64>, n: usize) -> LatencyBins {
    let sides = [p, c];
    let recorded = || sides.iter().filter(|h| !h.is_empty());
    let (Some(lo), Some(hi)) = (
        recorded().map(|h| h.min().max(1)).min(),
        recorded().map(|h| h.max()).max(),
    ) else {
        return LatencyBins {
            primary_count: 0,
            candidate_count: 0,
            bins: Vec::new(),
        };
    };
    let n = if hi > lo { n.max(1) } else { 1 };
    let ratio = (hi as f64 / lo as f64).ln();
    let edge = |i: usize| -> u64 {
        if i == 0 {
            lo
        } else if i == n {
            hi
        } else {
            (lo as f64 * (ratio * i as f64 / n as f64).exp()).round() as u64
        }
    };
    let mut bins: Vec<LatencyBin> = (0..n)
        .map(|i| LatencyBin {
            lo_us: edge(i),
            hi_us: edge(i + 1),
            primary: 0,
            candidate: 0,
        })
        .collect();
    let index = |v: u64| -> usize {
        if n == 1 || v <= lo {
            return 0;
        }
        let x = (v as f64 / lo as f64).ln() / ratio * n as f64;
        // The edges are rounded: nudge into the bin whose range holds `v`.
        let mut i = (x.floor() as usize).min(n - 1);
        while i > 0 && v < edge(i) {
            i -= 1;
        }
        while i + 1 < n && v >= edge(i + 1) {
            i += 1;
        }
        i
    };
    for (side, h) in sides.iter().enumerate() {
        for v in h.iter_recorded() {
            let b = &mut bins[index(v.value_iterated_to())];
            if side == 0 {
                b.primary += v.count_at_value();
            } else {
                b.candidate += v.count_at_value();
            }
        }
    }
    LatencyBins {
        primary_count: p.len(),
        candidate_count: c.len(),
        bins,
    }
}

fn delta_quantiles(l: &LatencySet, steps: usize) -> DeltaQuantiles {
    let count = l.delta_pos.len() + l.delta_neg.len();
    let quantiles = if count == 0 {
        Vec::new()
    } else {
        (0..=steps)
            .filter_map(|i| {
                let q = i as f64 / steps as f64;
                l.delta_quantile(q).map(|us| DeltaQuantile { q, us })
            })
            .collect()
    };
    DeltaQuantiles { count, quantiles }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::StatsConfig;

    #[test]
    fn every_recorded_value_lands_in_one_shared_bin() {
        let mut l = LatencySet::new(3);
        for (p, c) in [(100, 150), (200, 190), (5_000, 9_000), (100, 100)] {
            l.record(
                Some(Duration::from_micros(p)),
                Some(Duration::from_micros(c)),
            );
        }
        let b = latency_bins(&l.primary, &l.candidate, 10);
        assert_eq!(b.bins.len(), 10);
        assert_eq!(b.bins.iter().map(|x| x.primary).sum::<u64>(), 4);
        assert_eq!(b.bins.iter().map(|x| x.candidate).sum::<u64>(), 4);
        assert_eq!(b.bins[0].lo_us, 100);
        assert!(b.bins[9].hi_us >= 9_000);
        for w in b.bins.windows(2) {
            assert_eq!(w[0].hi_us, w[1].lo_us, "contiguous");
        }
        // 9 ms is the candidate's alone, in the last bin.
        assert_eq!(b.bins[9].candidate, 1);
        assert_eq!(b.bins[9].primary, 0);
        let d = delta_quantiles(&l, 50);
        assert_eq!(d.count, 4);
        assert_eq!(d.quantiles.len(), 51);
        assert!(d.quantiles[0].us < 0 && d.quantiles[50].us > 3_900);
    }

    #[test]
    fn the_divergence_series_has_one_point_per_bucket_of_the_window() {
        let stats = Stats::new(StatsConfig::default(), 10);
        let c = stats.charts(Window::Last(Duration::from_secs(300)), None);
        assert!(c.endpoints.is_empty());
        assert_eq!(c.bucket_ms, 60_000);
    }
}
