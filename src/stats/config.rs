//! `stats:` in `shadowdiff.yaml`, and the statistics' sizes and limits: one struct, read from the
//! file and handed to [`crate::stats::Stats`] as is.

use serde::Deserialize;
use std::time::Duration;

/// Sizes and limits of the statistics; every field has a documented default. Only `window` and
/// `bucket` are read from the file (`stats:`); the others are fixed at their defaults there and
/// exist for tests and embedders. The endpoint cap is not here: it is `grouping.max_endpoints`,
/// given to [`crate::stats::Stats::new`], so the statistics and the grouping cannot disagree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Longest window the summary answers for (a multiple of `bucket`, rounded up); more than 0.
    /// Default `15m`.
    #[serde(deserialize_with = "crate::units::de::positive_duration")]
    pub window: Duration,
    /// Resolution of the rolling window: the width of one bucket; more than 0. Default `1m`.
    #[serde(deserialize_with = "crate::units::de::positive_duration")]
    pub bucket: Duration,
    /// Distinct (field) keys per endpoint and bucket (and since start); the rest count as
    /// `(other)`. Default 256. Not read from the file.
    #[serde(skip)]
    pub max_fields: usize,
    /// Mismatch clusters per endpoint. Default 1000. Not read from the file.
    #[serde(skip)]
    pub max_signatures: usize,
    /// Fields listed per cluster. Default 32. Not read from the file.
    #[serde(skip)]
    pub max_cluster_fields: usize,
    /// Recent published events kept for `/api/v1/mismatches`. Default 10 000. Not read from the
    /// file.
    #[serde(skip)]
    pub recent_events: usize,
    /// Precision of the window buckets' histograms (1..=5). Default 2 (1% error), to bound
    /// memory. Not read from the file.
    #[serde(skip)]
    pub window_significant_digits: u8,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            bucket: Duration::from_secs(60),
            max_fields: 256,
            max_signatures: 1000,
            max_cluster_fields: 32,
            recent_events: 10_000,
            window_significant_digits: 2,
        }
    }
}
