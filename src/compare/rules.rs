//! `diff-rules/*.yaml`: loading, validation (every problem at once, with file, line and rule) and
//! compilation into a [`RuleSet`]. Rules are compiled once at start; per exchange the comparator
//! asks [`RuleSet::effective`] for the merged view of the rules that apply to its endpoint, which
//! is cached per combination of applicable rules.

use super::pattern::{EndpointPattern, PathPattern};
use crate::yaml_lines::LineIndex;
use parking_lot::RwLock;
use regex::Regex;
use serde_yaml_ng::Value as Yaml;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem found in a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub file: PathBuf,
    /// 1-based line, when it could be located.
    pub line: Option<usize>,
    /// `rule 2 ("GET /orders/{id}")`, or `None` for file-level problems.
    pub rule: Option<String>,
    pub reason: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, ": {r}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every problem found while loading rules; loading fails as a whole if any.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in rules:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct RuleErrors(pub Vec<RuleProblem>);

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
    pub ignore_headers: Vec<String>,
    pub paths: Vec<(PathPattern, Action)>,
    pub ignore_added: bool,
}

/// The merged rules for one endpoint: what the walk consults.
#[derive(Debug, Default)]
pub struct Effective {
    pub patterns: Vec<PathPattern>,
    pub actions: Vec<Action>,
    /// Lower-cased header names not compared.
    pub ignore_headers: Vec<String>,
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
            match std::fs::read_to_string(f) {
                Ok(text) => sources.push((f.clone(), text)),
                Err(e) => problems.push(RuleProblem {
                    file: f.clone(),
                    line: None,
                    rule: None,
                    reason: format!("cannot read: {e}"),
                }),
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
            parse_file(name, text, &mut set, &mut problems);
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
    RuleErrors(vec![RuleProblem {
        file: file.to_path_buf(),
        line: None,
        rule: None,
        reason,
    }])
}

const RULE_KEYS: &[&str] = &[
    "match",
    "ignore_headers",
    "ignore",
    "unordered",
    "keyed",
    "tolerance",
    "rewrite",
    "coerce",
    "ignore_added",
];

fn parse_file(file: &Path, text: &str, set: &mut RuleSet, problems: &mut Vec<RuleProblem>) {
    let lines = LineIndex::new(text);
    let mut problem = |line: Option<usize>, rule: Option<String>, reason: String| {
        problems.push(RuleProblem {
            file: file.to_path_buf(),
            line,
            rule,
            reason,
        })
    };
    let doc: Yaml = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            problem(line, None, format!("not valid YAML: {e}"));
            return;
        }
    };
    let Yaml::Mapping(top) = doc else {
        if !matches!(doc, Yaml::Null) {
            problem(
                Some(1),
                None,
                "expected a mapping with `version`, `endpoints` and `rules`".into(),
            );
        }
        return;
    };
    for (k, _) in &top {
        let key = k.as_str().unwrap_or("");
        if !matches!(key, "version" | "endpoints" | "rules") {
            problem(
                lines.top_key(key),
                None,
                format!("unknown key `{key}` (expected version, endpoints, rules)"),
            );
        }
    }
    match top.get("version") {
        Some(Yaml::Number(n)) if n.as_u64() == Some(1) => {}
        Some(v) => problem(
            lines.top_key("version"),
            None,
            format!("unsupported version {}: only 1 is known", yaml_short(v)),
        ),
        None => problem(Some(1), None, "missing `version: 1`".into()),
    }
    if let Some(eps) = top.get("endpoints") {
        match eps {
            Yaml::Sequence(items) => {
                for item in items {
                    match item.as_str().map(EndpointPattern::parse) {
                        Some(Ok(p)) => set.endpoints.push(p),
                        Some(Err(e)) => problem(
                            lines.find_after("endpoints:", item.as_str().unwrap_or("")),
                            None,
                            format!("endpoints: {e}"),
                        ),
                        None => problem(
                            lines.top_key("endpoints"),
                            None,
                            format!("endpoints: expected a string, got {}", yaml_short(item)),
                        ),
                    }
                }
            }
            Yaml::Null => {}
            other => problem(
                lines.top_key("endpoints"),
                None,
                format!("endpoints: expected a list, got {}", yaml_short(other)),
            ),
        }
    }
    let rules = match top.get("rules") {
        Some(Yaml::Sequence(r)) => r.as_slice(),
        Some(Yaml::Null) | None => &[],
        Some(other) => {
            problem(
                lines.top_key("rules"),
                None,
                format!("rules: expected a list, got {}", yaml_short(other)),
            );
            &[]
        }
    };
    let starts = lines.list_item_starts("rules");
    for (i, raw) in rules.iter().enumerate() {
        let start = starts.get(i).copied();
        let end = starts.get(i + 1).copied();
        let label_match = raw.get("match").and_then(|m| m.as_str()).unwrap_or("?");
        let label = format!("rule {} ({label_match:?})", i + 1);
        let at = |key: &str| lines.key_between(key, start, end).or(start);
        let mut local: Vec<(Option<usize>, String)> = Vec::new();
        let Yaml::Mapping(m) = raw else {
            problem(start, Some(label), "expected a mapping".into());
            continue;
        };
        for (k, _) in m {
            let key = k.as_str().unwrap_or("");
            if !RULE_KEYS.contains(&key) {
                local.push((
                    at(key),
                    format!(
                        "unknown key `{key}` (expected one of {})",
                        RULE_KEYS.join(", ")
                    ),
                ));
            }
        }
        let scope = match m.get("match").map(|v| (v, v.as_str())) {
            Some((_, Some(s))) => match EndpointPattern::parse(s) {
                Ok(p) => Some(p),
                Err(e) => {
                    local.push((at("match"), format!("match: {e}")));
                    None
                }
            },
            Some((v, None)) => {
                local.push((
                    at("match"),
                    format!("match: expected a string, got {}", yaml_short(v)),
                ));
                None
            }
            None => {
                local.push((
                    start,
                    "missing `match` (use \"*\" for every endpoint)".into(),
                ));
                None
            }
        };
        let mut rule = Rule {
            scope: scope.unwrap_or_else(EndpointPattern::any),
            ignore_headers: Vec::new(),
            paths: Vec::new(),
            ignore_added: false,
        };
        let mut path =
            |key: &str, src: &str, action: Action, local: &mut Vec<(Option<usize>, String)>| {
                match PathPattern::parse(src) {
                    Ok(p) => rule.paths.push((p, action)),
                    Err(e) => local.push((at(key), format!("{key}: {e}"))),
                }
            };
        for (key, action) in [
            ("ignore", Action::Ignore),
            ("unordered", Action::Unordered),
            ("coerce", Action::Coerce),
        ] {
            for s in string_list(m.get(key), key, &mut local, &at) {
                path(key, &s, action.clone(), &mut local);
            }
        }
        if let Some(v) = m.get("keyed") {
            match v {
                Yaml::Mapping(km) => {
                    for (p, k) in km {
                        match (p.as_str(), k.as_str()) {
                            (Some(p), Some(k)) if !k.is_empty() => {
                                path("keyed", p, Action::Keyed(k.to_string()), &mut local)
                            }
                            _ => local.push((
                                at("keyed"),
                                format!(
                                    "keyed: expected `\"/path\": key_field`, got {}: {}",
                                    yaml_short(p),
                                    yaml_short(k)
                                ),
                            )),
                        }
                    }
                }
                other => local.push((
                    at("keyed"),
                    format!(
                        "keyed: expected a mapping of path to key field, got {}",
                        yaml_short(other)
                    ),
                )),
            }
        }
        if let Some(v) = m.get("tolerance") {
            match v {
                Yaml::Mapping(tm) => {
                    for (p, t) in tm {
                        match (p.as_str(), tolerance(t)) {
                            (Some(p), Ok(t)) => {
                                path("tolerance", p, Action::Tolerance(t), &mut local)
                            }
                            (None, _) => local.push((
                                at("tolerance"),
                                format!("tolerance: path must be a string, got {}", yaml_short(p)),
                            )),
                            (Some(p), Err(e)) => {
                                local.push((at("tolerance"), format!("tolerance {p:?}: {e}")))
                            }
                        }
                    }
                }
                other => local.push((
                    at("tolerance"),
                    format!(
                        "tolerance: expected a mapping of path to {{abs, rel}}, got {}",
                        yaml_short(other)
                    ),
                )),
            }
        }
        if let Some(v) = m.get("rewrite") {
            match v {
                Yaml::Sequence(items) => {
                    for item in items {
                        match rewrite(item) {
                            Ok((p, rw)) => {
                                path("rewrite", &p, Action::Rewrite(Arc::new(rw)), &mut local)
                            }
                            Err(e) => local.push((at("rewrite"), format!("rewrite: {e}"))),
                        }
                    }
                }
                other => local.push((
                    at("rewrite"),
                    format!(
                        "rewrite: expected a list of {{path, regex, replace}}, got {}",
                        yaml_short(other)
                    ),
                )),
            }
        }
        rule.ignore_headers =
            string_list(m.get("ignore_headers"), "ignore_headers", &mut local, &at)
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect();
        match m.get("ignore_added") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Bool(b)) => rule.ignore_added = *b,
            Some(other) => local.push((
                at("ignore_added"),
                format!(
                    "ignore_added: expected true or false, got {}",
                    yaml_short(other)
                ),
            )),
        }
        if local.is_empty() {
            set.rules.push(rule);
        }
        for (line, reason) in local {
            problem(line, Some(label.clone()), reason);
        }
    }
}

fn string_list(
    v: Option<&Yaml>,
    key: &str,
    local: &mut Vec<(Option<usize>, String)>,
    at: &dyn Fn(&str) -> Option<usize>,
) -> Vec<String> {
    match v {
        None | Some(Yaml::Null) => Vec::new(),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(|i| match i.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    local.push((
                        at(key),
                        format!("{key}: expected strings, got {}", yaml_short(i)),
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            local.push((
                at(key),
                format!(
                    "{key}: expected a list of strings, got {}",
                    yaml_short(other)
                ),
            ));
            Vec::new()
        }
    }
}

fn tolerance(v: &Yaml) -> Result<Tolerance, String> {
    let Yaml::Mapping(m) = v else {
        return Err(format!(
            "expected {{abs: N}} and/or {{rel: N}}, got {}",
            yaml_short(v)
        ));
    };
    let mut t = Tolerance {
        abs: None,
        rel: None,
    };
    for (k, val) in m {
        let n = val.as_f64().filter(|n| n.is_finite() && *n >= 0.0);
        match (k.as_str(), n) {
            (Some("abs"), Some(n)) => t.abs = Some(n),
            (Some("rel"), Some(n)) => t.rel = Some(n),
            (Some("abs" | "rel"), None) => {
                return Err(format!(
                    "{} must be a non-negative number, got {}",
                    k.as_str().unwrap_or(""),
                    yaml_short(val)
                ));
            }
            _ => return Err(format!("unknown key {} (expected abs, rel)", yaml_short(k))),
        }
    }
    if t.abs.is_none() && t.rel.is_none() {
        return Err("needs abs or rel".into());
    }
    Ok(t)
}

fn rewrite(v: &Yaml) -> Result<(String, Rewrite), String> {
    let Yaml::Mapping(m) = v else {
        return Err(format!(
            "expected {{path, regex, replace}}, got {}",
            yaml_short(v)
        ));
    };
    for (k, _) in m {
        if !matches!(k.as_str(), Some("path" | "regex" | "replace")) {
            return Err(format!(
                "unknown key {} (expected path, regex, replace)",
                yaml_short(k)
            ));
        }
    }
    let path = m
        .get("path")
        .and_then(|p| p.as_str())
        .ok_or("missing `path`")?;
    let re = m
        .get("regex")
        .and_then(|p| p.as_str())
        .ok_or("missing `regex`")?;
    let replace = match m.get("replace") {
        None | Some(Yaml::Null) => String::new(),
        Some(r) => r.as_str().ok_or("`replace` must be a string")?.to_string(),
    };
    let regex = Regex::new(re).map_err(|e| format!("bad regex {re:?}: {e}"))?;
    Ok((path.to_string(), Rewrite { regex, replace }))
}

fn yaml_short(v: &Yaml) -> String {
    let s = match v {
        Yaml::Null => "null".to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Sequence(_) => "a list".to_string(),
        Yaml::Mapping(_) => "a mapping".to_string(),
        Yaml::Tagged(t) => format!("tagged {}", t.tag),
    };
    if s.len() > 60 {
        format!("{}…", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
