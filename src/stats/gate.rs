//! The release gate: turns a divergence rate and its Wilson interval into pass / fail /
//! insufficient_data, per endpoint and over the pool.

use super::wilson::wilson95;
use crate::units::de;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    // Declared in order of severity so `max` picks the worst.
    Pass,
    InsufficientData,
    Fail,
}

impl GateVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            GateVerdict::Pass => "pass",
            GateVerdict::InsufficientData => "insufficient_data",
            GateVerdict::Fail => "fail",
        }
    }

    /// The exit code `shadowdiff gate` returns for it (DESIGN.md, "Command line").
    pub fn exit_code(self) -> u8 {
        match self {
            GateVerdict::Pass => 0,
            GateVerdict::Fail => 1,
            GateVerdict::InsufficientData => 3,
        }
    }
}

/// `gate:` in the config file: the gate's defaults, used when a query does not say. The one
/// gate config: the admin server holds it and builds each query's [`GateParams`] from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Highest acceptable divergence rate. Default `0.01`.
    #[serde(deserialize_with = "de::rate")]
    pub max_divergence: f64,
    /// Fewest compared exchanges for a verdict. Default `500`.
    pub min_samples: u64,
    /// Per-endpoint overrides, keyed `"GET /x"`. Default none.
    pub endpoints: BTreeMap<String, GateEndpointConfig>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_divergence: 0.01,
            min_samples: 500,
            endpoints: BTreeMap::new(),
        }
    }
}

/// `gate.endpoints."GET /x"`: one endpoint's overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateEndpointConfig {
    /// Default the gate's `max_divergence`.
    #[serde(default, deserialize_with = "de::opt_rate")]
    pub max_divergence: Option<f64>,
    /// Default the gate's `min_samples`.
    #[serde(default)]
    pub min_samples: Option<u64>,
}

impl GateConfig {
    /// One query's parameters: what the query gives, else these defaults.
    pub fn params(
        &self,
        max_divergence: Option<f64>,
        min_samples: Option<u64>,
        endpoint: Option<String>,
    ) -> GateParams {
        GateParams {
            max_divergence: max_divergence.unwrap_or(self.max_divergence),
            min_samples: min_samples.unwrap_or(self.min_samples),
            endpoint,
            per_endpoint: self
                .endpoints
                .iter()
                .filter_map(|(e, t)| t.max_divergence.map(|m| (e.clone(), m)))
                .collect(),
        }
    }
}

/// What one gate query asks: thresholds resolved from the query and the [`GateConfig`]
/// ([`GateConfig::params`]).
#[derive(Debug, Clone)]
pub struct GateParams {
    /// Highest acceptable divergence rate (0..=1), unless `per_endpoint` says otherwise.
    pub max_divergence: f64,
    /// Fewer compared exchanges than this: `insufficient_data`.
    pub min_samples: u64,
    /// Only this endpoint (the pool is then that endpoint alone).
    pub endpoint: Option<String>,
    /// Endpoint → max divergence, from config; overrides `max_divergence` for that endpoint.
    pub per_endpoint: HashMap<String, f64>,
}

impl Default for GateParams {
    fn default() -> Self {
        GateConfig::default().params(None, None, None)
    }
}

/// Judges `divergent` out of `samples` against a threshold.
///
/// `pass` when the interval's upper bound is ≤ the threshold, `fail` when its lower bound is
/// above it, `insufficient_data` when there are fewer than `min_samples` samples or the interval
/// straddles the threshold (the data cannot tell yet).
pub fn judge(divergent: u64, samples: u64, max_divergence: f64, min_samples: u64) -> GateVerdict {
    if samples == 0 || samples < min_samples {
        return GateVerdict::InsufficientData;
    }
    let (lo, hi) = wilson95(divergent, samples);
    if hi <= max_divergence {
        GateVerdict::Pass
    } else if lo > max_divergence {
        GateVerdict::Fail
    } else {
        GateVerdict::InsufficientData
    }
}

/// One endpoint's line of the gate report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateEndpoint {
    pub endpoint: String,
    pub verdict: GateVerdict,
    pub divergence_rate: Option<f64>,
    pub divergent: u64,
    pub samples: u64,
    pub ci95: [f64; 2],
    pub max_divergence: f64,
}

/// The answer of `GET /api/v1/gate` (docs/api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// The worst of `pool_verdict` and every endpoint's verdict (fail > insufficient_data > pass).
    pub verdict: GateVerdict,
    /// The pool (all endpoints together, or the one asked for) judged on its own.
    pub pool_verdict: GateVerdict,
    pub divergence_rate: Option<f64>,
    pub divergent: u64,
    pub samples: u64,
    pub ci95: [f64; 2],
    pub max_divergence: f64,
    pub min_samples: u64,
    pub window: String,
    pub endpoints: Vec<GateEndpoint>,
}

pub(crate) fn rate(k: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

pub(crate) fn line(
    endpoint: &str,
    divergent: u64,
    samples: u64,
    max_divergence: f64,
    min_samples: u64,
) -> GateEndpoint {
    let (lo, hi) = wilson95(divergent, samples);
    GateEndpoint {
        endpoint: endpoint.to_string(),
        verdict: judge(divergent, samples, max_divergence, min_samples),
        divergence_rate: rate(divergent, samples),
        divergent,
        samples,
        ci95: [lo, hi],
        max_divergence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        // 0/1000: Wilson upper = z²/(n+z²) = 3.8415/1003.84 ≈ 0.00383 ≤ 0.01 → pass.
        assert_eq!(judge(0, 1000, 0.01, 500), GateVerdict::Pass);
        // 100/1000 = 10%, lower bound ≈ 0.083 > 0.01 → fail.
        assert_eq!(judge(100, 1000, 0.01, 500), GateVerdict::Fail);
        // 10/1000 = exactly the threshold: the interval straddles it.
        assert_eq!(judge(10, 1000, 0.01, 500), GateVerdict::InsufficientData);
        // Too few samples, however bad.
        assert_eq!(judge(400, 400, 0.01, 500), GateVerdict::InsufficientData);
        assert_eq!(judge(0, 0, 0.01, 0), GateVerdict::InsufficientData);
        assert!(GateVerdict::Fail > GateVerdict::InsufficientData);
        assert!(GateVerdict::InsufficientData > GateVerdict::Pass);
    }
}
