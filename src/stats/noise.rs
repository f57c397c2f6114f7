//! Learned noise: per endpoint and field, how often the candidate and the secondary differ from
//! the primary, over the life of the process. The pure, per-exchange marking lives in
//! [`crate::compare::noise`]; this is the stateful half, applied on the comparison workers
//! through [`crate::pipeline::Refine`].

use crate::compare::{DiffKind, Difference, Verdict, VerdictKind};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Standard errors by which the candidate must out-differ the secondary for a field to be real.
const REAL_Z: f64 = 2.0;

/// When a field counts as learned noise. See [`NoiseModel`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseConfig {
    /// Exchanges with a secondary answer, per endpoint, before any field is judged.
    pub min_samples: u64,
    /// Primary and secondary must differ on the field in at least this fraction of exchanges.
    pub absolute: f64,
    /// The candidate may differ on the field at most (1 + relative) × as often as the secondary
    /// does; more often, and the candidate changed something real on a noisy field.
    pub relative: f64,
    /// Fields tracked per endpoint (memory bound); further fields are not learned.
    pub max_fields: usize,
    /// Endpoints tracked (memory bound, matches the endpoint cap upstream).
    pub max_endpoints: usize,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            min_samples: 30,
            absolute: 0.01,
            relative: 0.2,
            max_fields: 256,
            max_endpoints: 256,
        }
    }
}

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
    /// Largest relative difference seen between primary and secondary numbers (for tolerances).
    max_rel: f64,
    numeric_only: bool,
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
#[derive(Debug, Default)]
pub struct NoiseModel {
    cfg: NoiseConfig,
    inner: Mutex<HashMap<String, EndpointCounts>>,
}

impl NoiseModel {
    pub fn new(cfg: NoiseConfig) -> Self {
        Self {
            cfg,
            inner: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &NoiseConfig {
        &self.cfg
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
        if !inner.contains_key(endpoint) && inner.len() >= self.cfg.max_endpoints {
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
            let c = ep
                .fields
                .entry(field.to_string())
                .or_insert_with(|| FieldCounts {
                    numeric_only: true,
                    ..Default::default()
                });
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
                    match relative_delta(&d.primary, &d.candidate) {
                        Some(r) => c.max_rel = c.max_rel.max(r),
                        None => c.numeric_only = false,
                    }
                }
            }
        }
        let ep = &*ep;
        for d in v.differences.iter_mut() {
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
                    .map(|(f, c)| FieldNoise {
                        field: f.clone(),
                        raw: c.raw,
                        noise: c.noise,
                        status: self.status_of(ep, Some(c)),
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
    /// volatile values, `unordered` for arrays whose order is noise, `tolerance` for numbers that
    /// jitter by a small relative amount. Meant for review and commit, not blind use.
    pub fn rules_yaml(&self) -> String {
        let inner = self.inner.lock();
        let mut endpoints: Vec<&String> = inner.keys().collect();
        endpoints.sort();
        let mut out = String::from(
            "# Learned by shadowdiff from primary-vs-secondary differences.\n# Review before committing to diff-rules/.\nversion: 1\nrules:\n",
        );
        let mut any = false;
        for name in endpoints {
            let ep = &inner[name];
            let mut fields: Vec<(&String, &FieldCounts)> = ep
                .fields
                .iter()
                .filter(|(_, c)| self.status_of(ep, Some(c)) == FieldStatus::Noisy)
                .collect();
            if fields.is_empty() {
                continue;
            }
            fields.sort_by(|a, b| a.0.cmp(b.0));
            let (mut ignore, mut unordered, mut tolerance) = (Vec::new(), Vec::new(), Vec::new());
            for (f, c) in fields {
                // Header and status noise is written as header ignores; status noise has no rule.
                if let Some(h) = f.strip_prefix("@headers/") {
                    ignore.push(("h", h.to_string(), c.noise, ep.exchanges));
                } else if f.starts_with('@') {
                    continue;
                } else if c.kinds == [DiffKind::Order] {
                    unordered.push((f.clone(), c.noise, ep.exchanges));
                } else if c.numeric_only
                    && c.max_rel > 0.0
                    && c.max_rel < 0.01
                    && c.kinds.iter().all(|k| *k == DiffKind::Value)
                {
                    tolerance.push((f.clone(), c.max_rel * 1.5, c.noise, ep.exchanges));
                } else {
                    ignore.push(("b", f.clone(), c.noise, ep.exchanges));
                }
            }
            any = true;
            out.push_str(&format!("  - match: {}\n", yaml_quote(name)));
            let headers: Vec<&(&str, String, u64, u64)> =
                ignore.iter().filter(|x| x.0 == "h").collect();
            if !headers.is_empty() {
                out.push_str("    ignore_headers:\n");
                for (_, h, n, total) in headers {
                    out.push_str(&format!(
                        "      - {}   # noisy in {n} of {total}\n",
                        yaml_quote(h)
                    ));
                }
            }
            let body: Vec<&(&str, String, u64, u64)> =
                ignore.iter().filter(|x| x.0 == "b").collect();
            if !body.is_empty() {
                out.push_str("    ignore:\n");
                for (_, f, n, total) in body {
                    out.push_str(&format!(
                        "      - {}   # noisy in {n} of {total}\n",
                        yaml_quote(f)
                    ));
                }
            }
            if !unordered.is_empty() {
                out.push_str("    unordered:\n");
                for (f, n, total) in &unordered {
                    out.push_str(&format!(
                        "      - {}   # order noisy in {n} of {total}\n",
                        yaml_quote(f)
                    ));
                }
            }
            if !tolerance.is_empty() {
                out.push_str("    tolerance:\n");
                for (f, rel, n, total) in &tolerance {
                    out.push_str(&format!(
                        "      {}: {{rel: {rel:.3e}}}   # jitter in {n} of {total}\n",
                        yaml_quote(f)
                    ));
                }
            }
        }
        if !any {
            out.push_str("  []\n");
            out = out.replace("rules:\n  []\n", "rules: []\n");
        }
        out
    }
}

fn relative_delta(a: &Value, b: &Value) -> Option<f64> {
    let (x, y) = (a.as_f64()?, b.as_f64()?);
    let m = x.abs().max(y.abs());
    Some(if m == 0.0 { 0.0 } else { (x - y).abs() / m })
}

/// Double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

impl crate::pipeline::Refine for NoiseModel {
    fn refine(&self, endpoint: &str, v: &mut Verdict) {
        self.apply(endpoint, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::noise::mark;
    use serde_json::Value;

    fn d(field: &str, kind: DiffKind) -> Difference {
        Difference {
            path: field.replace('*', "0"),
            field: field.into(),
            kind,
            primary: Value::Null,
            candidate: Value::Null,
            noise: false,
            detail: None,
        }
    }

    fn verdict(cand: Vec<Difference>, sec: Vec<Difference>) -> Verdict {
        let mut v = Verdict::skipped(crate::compare::SkipReason::SampledOut);
        v.skip_reason = None;
        v.kind = if cand.is_empty() {
            VerdictKind::Match
        } else {
            VerdictKind::Mismatch
        };
        v.differences = cand;
        mark(&mut v.differences, &sec);
        if !v.differences.is_empty() && v.differences.iter().all(|d| d.noise) {
            v.kind = VerdictKind::Noise;
        }
        v.secondary_differences = Some(sec);
        v
    }

    fn cfg() -> NoiseConfig {
        NoiseConfig {
            min_samples: 10,
            ..Default::default()
        }
    }

    #[test]
    fn a_field_noisy_between_legacy_instances_is_learned() {
        let m = NoiseModel::new(cfg());
        // /ts differs between primary and secondary in every exchange, and for the candidate.
        for _ in 0..10 {
            let mut v = verdict(
                vec![d("/ts", DiffKind::Value)],
                vec![d("/ts", DiffKind::Value)],
            );
            m.apply("GET /x", &mut v);
            assert_eq!(v.kind, VerdictKind::Noise);
        }
        let snap = m.snapshot();
        assert_eq!(snap[0].samples, 10);
        assert_eq!(
            (
                snap[0].fields[0].raw,
                snap[0].fields[0].noise,
                snap[0].fields[0].status
            ),
            (10, 10, FieldStatus::Noisy)
        );
        // Learned: even when the secondary happens to agree, the candidate's /ts difference is noise.
        let mut v = verdict(vec![d("/ts", DiffKind::Value)], vec![]);
        assert_eq!(
            v.kind,
            VerdictKind::Mismatch,
            "per-exchange marking alone cannot explain it"
        );
        m.apply("GET /x", &mut v);
        assert_eq!(v.kind, VerdictKind::Noise);
        // Other endpoints learn separately.
        let mut other = verdict(vec![d("/ts", DiffKind::Value)], vec![]);
        m.apply("GET /y", &mut other);
        assert_eq!(other.kind, VerdictKind::Mismatch);
    }

    #[test]
    fn a_sometimes_noisy_field_always_changed_by_the_candidate_stays_reported() {
        // Secondary differs on /price in 3 of 10 exchanges; the candidate changed it always.
        // `noisy_at`: which exchanges of each ten the secondary differs in.
        for (noisy_at, want_reported) in [
            // Three exchanges in, one noisy one: too few to call the field real, so exchange 3
            // stands as noise; by exchange 6 the counts say real (inside the learning phase),
            // and every exchange from then on is reported.
            ([3, 6, 9], 99),
            // The first three exchanges are all noisy: nothing yet tells the field apart from
            // noise, so those three stand as noise; by the next noisy one, it is real.
            ([0, 1, 2], 97),
        ] {
            let m = NoiseModel::new(cfg());
            let mut reported = 0;
            for i in 0..100 {
                let sec = if noisy_at.contains(&(i % 10)) {
                    vec![d("/price", DiffKind::Value)]
                } else {
                    vec![]
                };
                let mut v = verdict(vec![d("/price", DiffKind::Value)], sec);
                m.apply("GET /p", &mut v);
                if v.kind == VerdictKind::Mismatch {
                    reported += 1;
                }
            }
            assert_eq!(reported, want_reported, "noisy at {noisy_at:?}");
            let snap = m.snapshot();
            assert_eq!(snap[0].fields[0].status, FieldStatus::Real);
            assert_eq!((snap[0].fields[0].raw, snap[0].fields[0].noise), (100, 30));
        }
    }

    #[test]
    fn a_field_both_sides_shuffle_half_the_time_stays_noisy() {
        // Secondary and candidate each differ on /tags with probability 1/2, independently
        // (a fixed-seed generator, so the run is the same every time): the candidate is no
        // noisier than the legacy instances, and chance alone must not make the field real.
        let m = NoiseModel::new(cfg());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut coin = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x & 1 == 1
        };
        let mut ever_real = 0;
        for _ in 0..2000 {
            let cand = if coin() {
                vec![d("/tags", DiffKind::Order)]
            } else {
                vec![]
            };
            let sec = if coin() {
                vec![d("/tags", DiffKind::Order)]
            } else {
                vec![]
            };
            let mut v = verdict(cand, sec);
            m.apply("GET /o", &mut v);
            let snap = m.snapshot();
            if let Some(f) = snap.first().and_then(|e| e.fields.first()) {
                ever_real += usize::from(f.status == FieldStatus::Real);
            }
        }
        assert_eq!(ever_real, 0, "exchanges after which the field looked real");
        assert_eq!(m.snapshot()[0].fields[0].status, FieldStatus::Noisy);
    }

    #[test]
    fn a_mismatch_is_signed_by_its_real_differences_only() {
        // The same regression (/total) once with /ts noise around it and once without: one
        // cluster, whatever the noise did in each exchange.
        let m = NoiseModel::new(cfg());
        let mut with_noise = verdict(
            vec![d("/ts", DiffKind::Value), d("/total", DiffKind::Value)],
            vec![d("/ts", DiffKind::Value)],
        );
        m.apply("GET /s", &mut with_noise);
        let mut without = verdict(vec![d("/total", DiffKind::Value)], vec![]);
        m.apply("GET /s", &mut without);
        assert_eq!(with_noise.kind, VerdictKind::Mismatch);
        assert_eq!(with_noise.signature, without.signature);
        assert_eq!(
            without.signature,
            Some(crate::compare::signature(&[d("/total", DiffKind::Value)]))
        );
        // All noise: signed by the noise, so noise clusters stay apart from real failures.
        let mut only_noise = verdict(
            vec![d("/ts", DiffKind::Value)],
            vec![d("/ts", DiffKind::Value)],
        );
        m.apply("GET /s", &mut only_noise);
        assert_eq!(only_noise.kind, VerdictKind::Noise);
        assert_eq!(
            only_noise.signature,
            Some(crate::compare::signature(&[d("/ts", DiffKind::Value)]))
        );
    }

    #[test]
    fn without_a_secondary_nothing_changes() {
        let m = NoiseModel::new(cfg());
        for _ in 0..20 {
            let mut v = Verdict::skipped(crate::compare::SkipReason::SampledOut);
            v.kind = VerdictKind::Mismatch;
            v.skip_reason = None;
            v.differences = vec![d("/ts", DiffKind::Value)];
            m.apply("GET /x", &mut v);
            assert_eq!(v.kind, VerdictKind::Mismatch);
            assert!(!v.differences[0].noise);
        }
        assert!(m.snapshot().is_empty());
    }

    #[test]
    fn learned_rules_load_back_and_cancel_the_noise() {
        use crate::compare::rules::RuleSet;
        use crate::compare::{Comparator, CompareOptions};
        use crate::exchange::{Request, Response};
        use std::sync::Arc;
        let m = NoiseModel::new(cfg());
        let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
        let req = Request {
            method: "GET".into(),
            path: "/orders/1".into(),
            ..Default::default()
        };
        let resp = |b: String, rid: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("x-trace", rid.parse().unwrap());
            Response {
                status: 200,
                headers: h,
                body: bytes::Bytes::from(b),
                latency: Default::default(),
            }
        };
        let body = |i: u64, tags: &str, rate: &str| {
            format!(r#"{{"id":1,"at":"t{i}","tags":{tags},"rate":{rate},"total":5}}"#)
        };
        for i in 0..20u64 {
            let p = resp(body(i, r#"["a","b"]"#, "1.0001"), &format!("p{i}"));
            let s = resp(body(i + 100, r#"["b","a"]"#, "1.0002"), &format!("s{i}"));
            let c = resp(body(i + 200, r#"["b","a"]"#, "1.0003"), &format!("c{i}"));
            let mut v = cmp.compare_responses(&req, Some("GET /orders/{id}"), &p, &c);
            let sv = cmp.compare_responses(&req, Some("GET /orders/{id}"), &p, &s);
            mark(&mut v.differences, &sv.differences);
            v.secondary_differences = Some(sv.differences);
            m.apply("GET /orders/{id}", &mut v);
            assert_eq!(v.kind, VerdictKind::Noise, "{:?}", v.differences);
        }
        let yaml = m.rules_yaml();
        assert!(
            yaml.contains("unordered")
                && yaml.contains("\"/tags\"")
                && yaml.contains("\"/at\"")
                && yaml.contains("tolerance"),
            "{yaml}"
        );
        let rules = RuleSet::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let learned = Comparator::new(Arc::new(rules), CompareOptions::default());
        let p = resp(body(1, r#"["a","b"]"#, "1.0001"), "p");
        let c = resp(body(2, r#"["b","a"]"#, "1.0002"), "c");
        let v = learned.compare_responses(&req, Some("GET /orders/{id}"), &p, &c);
        assert_eq!(v.kind, VerdictKind::Match, "{yaml}\n{:?}", v.differences);
        // A real change on another field is still caught under the learned rules.
        let c2 = resp(
            body(2, r#"["b","a"]"#, "1.0002").replace("\"total\":5", "\"total\":6"),
            "c",
        );
        let v = learned.compare_responses(&req, Some("GET /orders/{id}"), &p, &c2);
        assert_eq!(
            v.differences
                .iter()
                .map(|d| d.path.as_str())
                .collect::<Vec<_>>(),
            vec!["/total"]
        );
    }
}
