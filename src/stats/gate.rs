//! The release gate: turns divergence counts into pass / fail / insufficient_data, per endpoint
//! and over the pool (docs/gate.md).
//!
//! The judgement is a pure function of counts ([`judge`], or [`Judge`] for many polls under one
//! rule): by default on the anytime-valid confidence sequence of [`super::sequential`], which
//! stays right however often the gate is polled; `method: wilson` keeps the fixed-sample Wilson
//! interval, valid only for a gate asked once.

use super::sequential::{Sequence, Side};
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

/// How the gate judges: the anytime-valid confidence sequence (default), or the fixed-sample
/// Wilson interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMethod {
    #[default]
    Sequential,
    Wilson,
}

impl GateMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            GateMethod::Sequential => "sequential",
            GateMethod::Wilson => "wilson",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "sequential" => Ok(Self::Sequential),
            "wilson" => Ok(Self::Wilson),
            _ => Err(format!("method must be sequential or wilson, not {s:?}")),
        }
    }
}

/// Which verdicts `min_samples` holds back: `both` (default: fewer samples is
/// `insufficient_data` whatever the data say) or `pass` only (overwhelming evidence of a bad
/// candidate fails at once; a pass still waits for `min_samples`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinSamplesFor {
    Pass,
    #[default]
    Both,
}

impl MinSamplesFor {
    pub fn as_str(self) -> &'static str {
        match self {
            MinSamplesFor::Pass => "pass",
            MinSamplesFor::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "pass" => Ok(Self::Pass),
            "both" => Ok(Self::Both),
            _ => Err(format!("min_samples_for must be pass or both, not {s:?}")),
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
    /// Which verdicts `min_samples` holds back: `pass` or `both`. Default `both`.
    pub min_samples_for: MinSamplesFor,
    /// `sequential` (anytime-valid, for a gate polled again and again) or `wilson`
    /// (fixed-sample). Default `sequential`.
    pub method: GateMethod,
    /// Per-endpoint overrides, keyed `"GET /x"`. Default none.
    pub endpoints: BTreeMap<String, GateEndpointConfig>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_divergence: 0.01,
            min_samples: 500,
            min_samples_for: MinSamplesFor::default(),
            method: GateMethod::default(),
            endpoints: BTreeMap::new(),
        }
    }
}

/// `gate.endpoints."GET /x"`: one endpoint's overrides. They win over the query's values for
/// that endpoint (and for the pool when the query gates that endpoint alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateEndpointConfig {
    /// Default the gate's `max_divergence`.
    #[serde(default, deserialize_with = "de::opt_rate")]
    pub max_divergence: Option<f64>,
    /// Default the gate's `min_samples`.
    #[serde(default)]
    pub min_samples: Option<u64>,
}

/// What one query asks; `None` leaves the configured default.
#[derive(Debug, Clone, Default)]
pub struct GateAsk {
    pub max_divergence: Option<f64>,
    pub min_samples: Option<u64>,
    pub min_samples_for: Option<MinSamplesFor>,
    pub method: Option<GateMethod>,
    pub endpoint: Option<String>,
}

impl GateConfig {
    /// One query's parameters: what the query gives, else these defaults.
    pub fn params(&self, ask: GateAsk) -> GateParams {
        GateParams {
            rule: GateRule {
                max_divergence: ask.max_divergence.unwrap_or(self.max_divergence),
                min_samples: ask.min_samples.unwrap_or(self.min_samples),
                min_samples_for: ask.min_samples_for.unwrap_or(self.min_samples_for),
                method: ask.method.unwrap_or(self.method),
            },
            endpoint: ask.endpoint,
            per_endpoint: self
                .endpoints
                .iter()
                .map(|(e, t)| (e.clone(), *t))
                .collect(),
        }
    }
}

/// How one line of the gate is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateRule {
    /// Highest acceptable divergence rate (0..=1).
    pub max_divergence: f64,
    /// Fewer compared exchanges than this: `insufficient_data` (for the verdicts
    /// `min_samples_for` names).
    pub min_samples: u64,
    pub min_samples_for: MinSamplesFor,
    pub method: GateMethod,
}

impl Default for GateRule {
    fn default() -> Self {
        GateParams::default().rule
    }
}

/// What one gate query asks: the rule resolved from the query and the [`GateConfig`]
/// ([`GateConfig::params`]), and the per-endpoint overrides.
#[derive(Debug, Clone)]
pub struct GateParams {
    /// The rule for the pool and for endpoints without overrides.
    pub rule: GateRule,
    /// Only this endpoint (the pool is then that endpoint alone, under its overrides).
    pub endpoint: Option<String>,
    /// Endpoint → overrides from config.
    pub per_endpoint: HashMap<String, GateEndpointConfig>,
}

impl Default for GateParams {
    fn default() -> Self {
        GateConfig::default().params(GateAsk::default())
    }
}

impl GateParams {
    /// The rule for one endpoint: its configured overrides over [`Self::rule`].
    pub fn rule_for(&self, endpoint: &str) -> GateRule {
        let o = self.per_endpoint.get(endpoint).copied().unwrap_or_default();
        GateRule {
            max_divergence: o.max_divergence.unwrap_or(self.rule.max_divergence),
            min_samples: o.min_samples.unwrap_or(self.rule.min_samples),
            ..self.rule
        }
    }

    /// The rule for the pool: the asked endpoint's when gating one, else [`Self::rule`].
    pub fn pool_rule(&self) -> GateRule {
        match &self.endpoint {
            Some(e) => self.rule_for(e),
            None => self.rule,
        }
    }
}

/// What the gate judges: compared exchanges and how many of them diverged. (The one input of
/// the judgement; anything that should not count — an acknowledged signature, say — is taken
/// out of these counts before judging.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateCounts {
    pub divergent: u64,
    pub samples: u64,
}

/// A verdict and the interval it was judged on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub verdict: GateVerdict,
    /// The 95% confidence sequence (sequential) or Wilson interval at these counts.
    pub ci95: [f64; 2],
}

/// Judges counts under one rule; built once per rule, it answers each poll in O(1) (the
/// simulation in `tests/gate_simulation.rs` polls it after every sample).
#[derive(Debug, Clone, Copy)]
pub struct Judge {
    rule: GateRule,
    sequence: Option<Sequence>,
}

impl Judge {
    pub fn new(rule: GateRule) -> Self {
        Self {
            rule,
            sequence: (rule.method == GateMethod::Sequential)
                .then(|| Sequence::new(rule.max_divergence)),
        }
    }

    /// Where the threshold lies with respect to the interval.
    fn side(&self, c: GateCounts) -> Side {
        match &self.sequence {
            Some(s) => s.side(c.divergent, c.samples),
            None => {
                let (lo, hi) = wilson95(c.divergent, c.samples);
                if hi <= self.rule.max_divergence {
                    Side::Below
                } else if lo > self.rule.max_divergence {
                    Side::Above
                } else {
                    Side::Inside
                }
            }
        }
    }

    /// `pass` when the whole interval is at or under the threshold, `fail` when it is above,
    /// `insufficient_data` when it straddles the threshold or `min_samples` holds the verdict.
    pub fn verdict(&self, c: GateCounts) -> GateVerdict {
        let enough = c.samples > 0 && c.samples >= self.rule.min_samples;
        match self.side(c) {
            Side::Below if enough => GateVerdict::Pass,
            Side::Above if enough || self.rule.min_samples_for == MinSamplesFor::Pass => {
                GateVerdict::Fail
            }
            _ => GateVerdict::InsufficientData,
        }
    }

    /// The verdict and its interval.
    pub fn judge(&self, c: GateCounts) -> Judgement {
        let (lo, hi) = match &self.sequence {
            Some(s) => s.interval(c.divergent, c.samples),
            None => wilson95(c.divergent, c.samples),
        };
        Judgement {
            verdict: self.verdict(c),
            ci95: [lo, hi],
        }
    }
}

/// Judges counts under a rule (a pure function; [`Judge`] for many polls).
pub fn judge(c: GateCounts, rule: &GateRule) -> Judgement {
    Judge::new(*rule).judge(c)
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
    pub min_samples: u64,
    /// Acknowledged exchanges; `excluded_from_gate` of them are not in `divergent`.
    #[serde(default)]
    pub expected: super::triage::Expected,
}

/// The answer of `GET /api/v1/gate` (docs/api.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// The worst of `pool_verdict` and every endpoint's verdict (fail > insufficient_data > pass).
    pub verdict: GateVerdict,
    /// The pool (all endpoints together, or the one asked for) judged on its own.
    pub pool_verdict: GateVerdict,
    /// How every line was judged; `ci95` is that method's interval.
    pub method: GateMethod,
    pub divergence_rate: Option<f64>,
    pub divergent: u64,
    pub samples: u64,
    pub ci95: [f64; 2],
    pub max_divergence: f64,
    pub min_samples: u64,
    pub min_samples_for: MinSamplesFor,
    pub window: String,
    pub endpoints: Vec<GateEndpoint>,
    /// Acknowledged exchanges over all endpoints judged; `excluded_from_gate` of them are not in
    /// `divergent` (they were divergent, and their acknowledgement says to leave them out).
    #[serde(default)]
    pub expected: super::triage::Expected,
}

pub(crate) fn rate(k: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

pub(crate) fn line(endpoint: &str, c: GateCounts, rule: &GateRule) -> GateEndpoint {
    let j = judge(c, rule);
    GateEndpoint {
        endpoint: endpoint.to_string(),
        verdict: j.verdict,
        divergence_rate: rate(c.divergent, c.samples),
        divergent: c.divergent,
        samples: c.samples,
        ci95: j.ci95,
        max_divergence: rule.max_divergence,
        min_samples: rule.min_samples,
        expected: super::triage::Expected::default(),
    }
}

#[cfg(test)]
mod tests;
