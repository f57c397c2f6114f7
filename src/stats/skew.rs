//! The send skew: time between the earliest and the latest of the primary, candidate and
//! secondary sends of one exchange. Noise cancellation rests on the three seeing the same
//! moment, so the skew is watched process-wide. Lock-free: fixed buckets of atomic counters,
//! recorded by every comparison worker without contention.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (µs) of the skew buckets: 50 µs … 1 s (skews above a second land in `+Inf`).
pub const SKEW_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

#[derive(Debug, Default)]
pub struct SkewHistogram {
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; SKEW_BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

/// What `/api/v1/summary` shows of the skew (`send_skew`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkewSummary {
    /// Exchanges whose sends were timed.
    pub count: u64,
    pub mean_us: u64,
    /// Upper bound of the bucket holding the 99th percentile (`null`: above 1 s).
    pub p99_le_us: Option<u64>,
    pub max_us: u64,
}

impl SkewHistogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = SKEW_BUCKETS_US
            .iter()
            .position(|le| us <= *le)
            .unwrap_or(SKEW_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Cumulative `(le µs, count)` pairs, then the total: the Prometheus shape.
    pub fn cumulative(&self) -> (Vec<(u64, u64)>, u64, u64) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(SKEW_BUCKETS_US.len());
        for (i, le) in SKEW_BUCKETS_US.iter().enumerate() {
            acc += self.buckets[i].load(Ordering::Relaxed);
            out.push((*le, acc));
        }
        let total = acc + self.buckets[SKEW_BUCKETS_US.len()].load(Ordering::Relaxed);
        (out, total, self.sum_us.load(Ordering::Relaxed))
    }

    pub fn summary(&self) -> Option<SkewSummary> {
        let (buckets, count, sum) = self.cumulative();
        if count == 0 {
            return None;
        }
        let rank = count.saturating_mul(99).div_ceil(100).max(1);
        Some(SkewSummary {
            count,
            mean_us: sum / count,
            p99_le_us: buckets.iter().find(|(_, c)| *c >= rank).map(|(le, _)| *le),
            max_us: self.max_us.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_summary_reads_them() {
        let h = SkewHistogram::default();
        assert_eq!(h.summary(), None);
        for us in [10, 60, 60, 3_000, 2_000_000] {
            h.record(Duration::from_micros(us));
        }
        let (b, total, sum) = h.cumulative();
        assert_eq!(total, 5);
        assert_eq!(sum, 2_003_130);
        assert_eq!(b[0], (50, 1));
        assert_eq!(b[1], (100, 3));
        assert_eq!(b[6], (5_000, 4));
        assert_eq!(b.last(), Some(&(1_000_000, 4)));
        let s = h.summary().unwrap_or_else(|| unreachable!());
        assert_eq!((s.count, s.max_us, s.mean_us), (5, 2_000_000, 400_626));
        // The 99th percentile is the 5th value, above the last bound.
        assert_eq!(s.p99_le_us, None);
    }
}
