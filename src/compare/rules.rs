//! `diff-rules/*.yaml`: loading, validation (every problem at once, with file, line and rule) and
//! compilation into a [`RuleSet`]. Rules are compiled once at start; per exchange the comparator
//! asks [`RuleSet::effective`] for the merged view of the rules that apply to its endpoint, which
//! is cached per combination of applicable rules.
//!
//! [`RuleSet::load`] is the one loader (the CLI, the config and the reload all call it); the
//! file form is `deny_unknown_fields` structs (`rules/load.rs`), checked key by key with the
//! config's machinery ([`crate::yaml`]), so rules and config report problems alike.

mod load;

use super::pattern::{EndpointPattern, HeaderPattern, PathPattern};
use crate::yaml::Problem;
use parking_lot::RwLock;
use regex::Regex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every problem found while loading rules; loading fails as a whole if any.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in rules:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct RuleErrors(pub Vec<Problem>);

/// Tolerance for numbers: equal when |p − c| ≤ abs, or |p − c| ≤ rel × max(|p|, |c|).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub abs: Option<f64>,
    pub rel: Option<f64>,
}

impl Tolerance {
    pub fn accepts(&self, p: f64, c: f64) -> bool {
        let d = (p - c).abs();
        self.abs.is_some_and(|a| d <= a) || self.rel.is_some_and(|r| d <= r * p.abs().max(c.abs()))
    }
}

/// A regex rewrite applied to string values at a path, on both sides, before comparison.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pub regex: Regex,
    pub replace: String,
}

/// What a path pattern asks of the comparator at the nodes it matches.
#[derive(Debug, Clone)]
pub enum Action {
    Ignore,
    Unordered,
    Keyed(String),
    Tolerance(Tolerance),
    Rewrite(Arc<Rewrite>),
    Coerce,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub scope: EndpointPattern,
    pub ignore_headers: Vec<HeaderPattern>,
    pub paths: Vec<(PathPattern, Action)>,
    pub ignore_added: bool,
}

/// The merged rules for one endpoint: what the walk consults.
#[derive(Debug, Default)]
pub struct Effective {
    pub patterns: Vec<PathPattern>,
    pub actions: Vec<Action>,
    /// Header names (and `*` globs) not compared.
    pub ignore_headers: Vec<HeaderPattern>,
    pub ignore_added: bool,
}

/// All rules, compiled.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Route templates for grouping, in file order.
    pub endpoints: Vec<EndpointPattern>,
    pub rules: Vec<Rule>,
    /// Files the rules came from.
    pub files: Vec<PathBuf>,
    cache: RwLock<HashMap<Vec<u64>, Arc<Effective>>>,
}

impl RuleSet {
    /// Loads a rules file, or every `*.yaml`/`*.yml` of a folder in name order.
    pub fn load(path: &Path) -> Result<RuleSet, RuleErrors> {
        if !path.exists() {
            return Err(single(path, "rules: no such file or folder".into()));
        }
        let files = if path.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| single(path, format!("cannot read folder: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            v.sort();
            v
        } else {
            vec![path.to_path_buf()]
        };
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        for f in &files {
            match crate::yaml::read(f) {
                Ok(text) => sources.push((f.clone(), text)),
                Err(p) => problems.push(p),
            }
        }
        let refs: Vec<(&Path, &str)> = sources
            .iter()
            .map(|(p, t)| (p.as_path(), t.as_str()))
            .collect();
        match Self::from_sources(&refs) {
            Ok(set) if problems.is_empty() => Ok(set),
            Ok(_) => Err(RuleErrors(problems)),
            Err(RuleErrors(mut more)) => {
                problems.append(&mut more);
                Err(RuleErrors(problems))
            }
        }
    }

    /// Compiles rules from in-memory YAML texts; `name` is used in messages.
    pub fn from_sources(sources: &[(&Path, &str)]) -> Result<RuleSet, RuleErrors> {
        let mut set = RuleSet::default();
        let mut problems = Vec::new();
        for (name, text) in sources {
            load::file(name, text, &mut set, &mut problems);
            set.files.push(name.to_path_buf());
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(RuleErrors(problems))
        }
    }

    /// Convenience for tests and embedded defaults.
    pub fn from_yaml(text: &str) -> Result<RuleSet, RuleErrors> {
        Self::from_sources(&[(Path::new("<inline>"), text)])
    }

    /// The first `endpoints:` template matching a request, if any.
    pub fn endpoint_for(&self, method: &str, path: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|e| e.matches(method, path))
            .map(|e| e.as_str())
    }

    /// The merged rules for a request (`method`, `path`); `endpoint` (a template such as
    /// `GET /orders/{id}`) is also tried so that rules written against the template apply.
    pub fn effective(&self, method: &str, path: &str, endpoint: Option<&str>) -> Arc<Effective> {
        let mut mask = vec![0u64; self.rules.len().div_ceil(64)];
        for (i, r) in self.rules.iter().enumerate() {
            if r.scope.matches(method, path)
                || endpoint.is_some_and(|e| r.scope.matches_endpoint(e))
            {
                mask[i / 64] |= 1 << (i % 64);
            }
        }
        if let Some(e) = self.cache.read().get(&mask) {
            return e.clone();
        }
        let mut eff = Effective::default();
        for (i, r) in self.rules.iter().enumerate() {
            if mask[i / 64] & (1 << (i % 64)) == 0 {
                continue;
            }
            for (p, a) in &r.paths {
                eff.patterns.push(p.clone());
                eff.actions.push(a.clone());
            }
            for h in &r.ignore_headers {
                if !eff.ignore_headers.contains(h) {
                    eff.ignore_headers.push(h.clone());
                }
            }
            eff.ignore_added |= r.ignore_added;
        }
        let eff = Arc::new(eff);
        let mut cache = self.cache.write();
        // The number of distinct rule combinations is bounded by the endpoints seen; cap it
        // anyway so pathological scopes cannot grow memory without bound.
        if cache.len() < 4096 {
            cache.insert(mask, eff.clone());
        }
        eff
    }
}

fn single(file: &Path, reason: String) -> RuleErrors {
    RuleErrors(vec![Problem::new(file, None, reason)])
}

#[cfg(test)]
mod tests;
