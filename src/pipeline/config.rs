//! `compare:` in the config file: the comparison stage (its worker pool and the comparator's
//! limits), owned by the pipeline and held by [`crate::config::Config`].

use crate::units::de;
use serde::Deserialize;

/// `compare:` — the comparison workers, off the request path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompareConfig {
    /// OS threads comparing exchanges. Default `1`.
    #[serde(deserialize_with = "de::positive")]
    pub workers: usize,
    /// Exchanges waiting for a worker at most; beyond, dropped as `compare_queue_full`.
    /// Default `1024`.
    #[serde(deserialize_with = "de::positive")]
    pub queue: usize,
    /// Largest decoded (decompressed) body compared; at least 1 byte. Default `16MiB`.
    #[serde(deserialize_with = "de::positive_size")]
    pub max_decoded_bytes: usize,
    /// Differences kept per exchange. Default `1000`.
    #[serde(deserialize_with = "de::positive")]
    pub max_differences: usize,
    /// Niceness of the comparison threads (Linux; 0 to 19): under CPU pressure forwarding wins
    /// and comparisons shed as `compare_queue_full`. `0` runs them like the rest. Default `10`.
    #[serde(deserialize_with = "de::nice")]
    pub nice: i32,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            queue: 1024,
            max_decoded_bytes: 16 << 20,
            max_differences: 1000,
            nice: 10,
        }
    }
}
