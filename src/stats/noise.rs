//! Learned noise: per endpoint and field, how often the candidate and the secondary differ from
//! the primary, over the life of the process. The pure, per-exchange marking lives in
//! [`crate::compare::noise`]; this is the stateful half, applied on the comparison workers
//! through [`crate::pipeline::Refine`].

use crate::compare::{DiffKind, Difference, Verdict, VerdictKind};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

mod suggest;
pub(crate) use suggest::yaml_quote;

pub use suggest::{Evidence, SuggestedRule, Suggestion};

/// Standard errors by which the candidate must out-differ the secondary for a field to be real.
const REAL_Z: f64 = 2.0;

/// `noise:` in `shadowdiff.yaml`: when a field counts as learned noise (only with a `secondary`;
/// see [`NoiseModel`] for the rule). One struct, read from the file and handed to the model as is;
/// every field has a documented default. The endpoint cap is not here: it is
/// `grouping.max_endpoints`, given to [`NoiseModel::new`].
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseConfig {
    /// Exchanges with a secondary answer, per endpoint, before a field may be called noisy.
    /// Default `30`.
    pub min_samples: u64,
    /// Primary and secondary must differ on a field in at least this fraction of exchanges for
    /// it to be noise. Default `1%`.
    #[serde(deserialize_with = "crate::units::de::rate")]
    pub absolute: f64,
    /// The candidate may differ on a noisy field at most (1 + this) × as often as the secondary
    /// does; more often, the candidate changed something real on a noisy field. Default `20%`.
    #[serde(deserialize_with = "crate::units::de::rate")]
    pub relative: f64,
    /// Fields tracked per endpoint (memory bound); further fields are not learned. Default 256.
    /// Not read from the file.
    #[serde(skip)]
    pub max_fields: usize,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            min_samples: 30,
            absolute: 0.01,
            relative: 0.2,
            max_fields: 256,
        }
    }
}

/// The endpoint cap of a model built without one ([`NoiseModel::default`], as
/// [`crate::config::ProxyConfig::new`] does): room for the default grouping's 200 endpoints,
/// `OTHER` and the rules' templates.
const UNWIRED_MAX_ENDPOINTS: usize = 256;

/// What the statistics say of one field of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    /// Fewer than `min_samples` exchanges with a secondary answer so far (and not `Real`).
    Collecting,
    /// Differs between the legacy instances about as often as for the candidate: noise.
    Noisy,
    /// The candidate differs notably more often than the legacy instances do: a real change,
    /// reported even on exchanges where the secondary happened to differ too. Decided on the
    /// running counts, from the first exchange.
    Real,
    /// The legacy instances rarely differ on it, and the candidate no more often than they do.
    Stable,
}

#[derive(Debug, Clone, Default)]
struct FieldCounts {
    raw: u64,
    noise: u64,
    /// Exchanges where both the candidate and the secondary differed on the field.
    both: u64,
    kinds: Vec<DiffKind>,
    /// What the primary and secondary values looked like where they differed: the evidence
    /// behind a suggested rule.
    values: suggest::Values,
}

#[derive(Debug, Default)]
struct EndpointCounts {
    exchanges: u64,
    fields: HashMap<String, FieldCounts>,
}

/// One field's learned state, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FieldNoise {
    pub field: String,
    pub raw: u64,
    pub noise: u64,
    pub status: FieldStatus,
    /// For a noisy field: the rule that would absorb the noise, and the evidence for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<Suggestion>,
}

/// One endpoint's learned noise.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointNoise {
    pub endpoint: String,
    /// Exchanges that had a secondary answer.
    pub samples: u64,
    pub fields: Vec<FieldNoise>,
}

/// Learns, per endpoint and field, how often the candidate differs from the primary (raw) and
/// how often the secondary does (noise), and applies the verdict of that learning to each new
/// exchange:
///
/// - a field is **noisy** once the endpoint has `min_samples` exchanges with a secondary answer,
///   primary and secondary differ on it in at least `absolute` of them, and the candidate differs
///   on it at most `(1 + relative)` × as often as the secondary does. Candidate differences on a
///   noisy field are marked `noise` even in exchanges where the secondary happened to agree;
/// - a field is **real** when the candidate differs on it more often than that bound, by more
///   than two standard errors of the paired difference — judged on the running counts, without
///   waiting for `min_samples`: per-exchange noise marks on it are withdrawn, so a
///   sometimes-noisy field that the candidate always changes is reported on every exchange once
///   a handful of exchanges have shown it (before that, an exchange where the secondary also
///   differed can still count as noise).
///
/// Diffy's thresholds (relative 20%, absolute 0.03% of requests) were the starting point; the
/// absolute floor here is 1% because a field seen noisy in 3 of 10,000 exchanges is better
/// reported than silenced. Counts only grow: the model is for the life of the process.
#[derive(Debug)]
pub struct NoiseModel {
    cfg: NoiseConfig,
    /// Endpoints learned at most (memory bound); later ones are not learned.
    max_endpoints: usize,
    inner: Mutex<HashMap<String, EndpointCounts>>,
}

impl Default for NoiseModel {
    fn default() -> Self {
        Self::new(NoiseConfig::default(), UNWIRED_MAX_ENDPOINTS)
    }
}

impl NoiseModel {
    /// A model learning at most `max_endpoints` endpoints: the grouping's cap
    /// (`grouping.max_endpoints`), at least 1.
    pub fn new(cfg: NoiseConfig, max_endpoints: usize) -> Self {
        Self {
            cfg,
            max_endpoints: max_endpoints.max(1),
            inner: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &NoiseConfig {
        &self.cfg
    }

    /// Endpoints learned at most.
    pub fn max_endpoints(&self) -> usize {
        self.max_endpoints
    }

    fn status_of(&self, ep: &EndpointCounts, f: Option<&FieldCounts>) -> FieldStatus {
        let Some(f) = f else {
            return if ep.exchanges < self.cfg.min_samples {
                FieldStatus::Collecting
            } else {
                FieldStatus::Stable
            };
        };
        // Asymmetric on purpose. Calling a field noise can hide a regression, so it waits for
        // `min_samples`; calling it real can only report too much, so it is judged on the running
        // counts, from the first exchanges on — but not on chance: the candidate must differ on it
        // more than (1 + relative) × as often as the secondary, by more than two standard errors.
        // The exchanges are paired (both answers are to the same request), so the test is on the
        // discordant ones, as McNemar's: b = only the candidate differed, c = only the
        // secondary; under "no noisier than the legacy instances", b − c has spread √(b + c).
        // Without that margin, a field both sides shuffle half the time would flip to real
        // whenever the candidate's coin ran a little hot.
        let b = f.raw.saturating_sub(f.both) as f64;
        let c = f.noise.saturating_sub(f.both) as f64;
        if b - c > self.cfg.relative * f.noise as f64 + REAL_Z * (b + c).sqrt() {
            return FieldStatus::Real;
        }
        if ep.exchanges < self.cfg.min_samples {
            return FieldStatus::Collecting;
        }
        let n = ep.exchanges as f64;
        if f.noise == 0 || (f.noise as f64) < self.cfg.absolute * n {
            FieldStatus::Stable
        } else {
            FieldStatus::Noisy
        }
    }

    /// Learns from one compared exchange and applies what is learned to its verdict. Does
    /// nothing without a secondary answer, so a sidecar without a secondary behaves as before.
    pub fn apply(&self, endpoint: &str, v: &mut Verdict) {
        let Some(secondary) = v.secondary_differences.as_ref() else {
            return;
        };
        if !matches!(
            v.kind,
            VerdictKind::Match | VerdictKind::Mismatch | VerdictKind::Noise
        ) {
            return;
        }
        let mut inner = self.inner.lock();
        if !inner.contains_key(endpoint) && inner.len() >= self.max_endpoints {
            return;
        }
        let ep = inner.entry(endpoint.to_string()).or_default();
        ep.exchanges += 1;
        // Count each field once per exchange, whatever number of paths it appeared at.
        let raw: HashSet<&str> = v.differences.iter().map(|d| d.field.as_str()).collect();
        let mut noise: HashMap<&str, Vec<&Difference>> = HashMap::new();
        for d in secondary {
            noise.entry(d.field.as_str()).or_default().push(d);
        }
        for field in raw
            .iter()
            .copied()
            .chain(noise.keys().copied())
            .collect::<HashSet<_>>()
        {
            if !ep.fields.contains_key(field) && ep.fields.len() >= self.cfg.max_fields {
                continue;
            }
            let c = ep.fields.entry(field.to_string()).or_default();
            if raw.contains(field) {
                c.raw += 1;
            }
            if let Some(ds) = noise.get(field) {
                c.noise += 1;
                c.both += u64::from(raw.contains(field));
                for d in ds {
                    if !c.kinds.contains(&d.kind) {
                        c.kinds.push(d.kind);
                    }
                    c.values.observe(&d.primary, &d.candidate);
                }
            }
        }
        let ep = &*ep;
        // Text and binary bodies (field "") are judged line by line in each exchange
        // (`compare/text.rs`); what is learned of the body as a whole must not override that, or
        // one volatile line would make every change to the body noise again.
        for d in v
            .differences
            .iter_mut()
            .filter(|d| d.kind != DiffKind::Body)
        {
            match self.status_of(ep, ep.fields.get(&d.field)) {
                FieldStatus::Noisy => d.noise = true,
                FieldStatus::Real => d.noise = false,
                FieldStatus::Collecting | FieldStatus::Stable => {}
            }
        }
        if !v.differences.is_empty() {
            v.kind = if v.differences.iter().all(|d| d.noise) {
                VerdictKind::Noise
            } else {
                VerdictKind::Mismatch
            };
            v.resign();
        }
    }

    /// The learned state of every endpoint, fields sorted by noise count.
    pub fn snapshot(&self) -> Vec<EndpointNoise> {
        let inner = self.inner.lock();
        let mut out: Vec<EndpointNoise> = inner
            .iter()
            .map(|(name, ep)| {
                let mut fields: Vec<FieldNoise> = ep
                    .fields
                    .iter()
                    .map(|(f, c)| {
                        let status = self.status_of(ep, Some(c));
                        FieldNoise {
                            field: f.clone(),
                            raw: c.raw,
                            noise: c.noise,
                            status,
                            suggestion: (status == FieldStatus::Noisy)
                                .then(|| suggest::suggest(f, c, ep.exchanges))
                                .flatten(),
                        }
                    })
                    .collect();
                fields.sort_by(|a, b| b.noise.cmp(&a.noise).then(a.field.cmp(&b.field)));
                EndpointNoise {
                    endpoint: name.clone(),
                    samples: ep.exchanges,
                    fields,
                }
            })
            .collect();
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }

    /// A `diff-rules` file (YAML) with one rule per endpoint that has noisy fields: `ignore` for
    /// volatile values (ids, timestamps: values that never repeat), `unordered` for arrays whose
    /// order is noise, `tolerance` for numbers whose relative spread is small and stable,
    /// `ignore_headers` for noisy headers — each line commented with its evidence. Meant for
    /// review and commit, not blind use.
    pub fn rules_yaml(&self) -> String {
        let inner = self.inner.lock();
        let mut endpoints: Vec<(&str, Vec<(&str, Suggestion)>)> = inner
            .iter()
            .map(|(name, ep)| {
                let mut fields: Vec<(&str, Suggestion)> = ep
                    .fields
                    .iter()
                    .filter(|(_, c)| self.status_of(ep, Some(c)) == FieldStatus::Noisy)
                    .filter_map(|(f, c)| Some((f.as_str(), suggest::suggest(f, c, ep.exchanges)?)))
                    .collect();
                fields.sort_by(|a, b| a.0.cmp(b.0));
                (name.as_str(), fields)
            })
            .collect();
        endpoints.sort_by(|a, b| a.0.cmp(b.0));
        suggest::rules_yaml(&endpoints)
    }
}

impl crate::pipeline::Refine for NoiseModel {
    fn refine(&self, endpoint: &str, v: &mut Verdict) {
        self.apply(endpoint, v);
    }
}

#[cfg(test)]
mod tests;
