//! A rules file as written (DESIGN.md, "Rules"), and its compilation into [`Rule`]s.
//!
//! The file form is `deny_unknown_fields` structs, checked the way the config is
//! ([`crate::yaml`]): each key on its own, so one bad key cannot hide the next, and every rule on
//! its own, so one bad rule cannot hide the next. What serde cannot say (a path pattern, a regex,
//! a bound) is checked while compiling. Every problem names the file, the line, the rule and the
//! reason.

use super::{Action, Rewrite, Rule, RuleSet, Tolerance};
use crate::compare::pattern::{EndpointPattern, HeaderPattern, PathPattern};
use crate::yaml::{self, LineIndex, Problem};
use regex::Regex;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde_yaml_ng::{Mapping, Value as Yaml};
use std::path::Path;
use std::sync::Arc;

/// The top of a rules file. Every field has a default so that each key can be checked alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    /// Required; only `1` is known.
    version: Option<u64>,
    /// Route templates used for grouping, `"GET /orders/{id}"`.
    endpoints: Option<Vec<String>>,
    /// Each rule is checked on its own as a [`RawRule`], so a bad one cannot hide the next.
    rules: Option<Vec<Yaml>>,
}

/// One rule as written. Maps are kept as YAML mappings, in the order written (the order of the
/// compiled patterns), and their entries are checked one by one while compiling.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRule {
    /// Required: the endpoint pattern the rule applies to, `"*"` for every endpoint.
    #[serde(rename = "match")]
    scope: Option<String>,
    /// Header names not compared (case-insensitive, `*` globs).
    ignore_headers: Option<Vec<String>>,
    ignore: Option<Vec<String>>,
    unordered: Option<Vec<String>>,
    /// Path → key field pairing array elements, `{"/items": "sku"}`.
    keyed: Option<Mapping>,
    /// Path → [`RawTolerance`].
    tolerance: Option<Mapping>,
    /// Each a [`RawRewrite`].
    rewrite: Option<Vec<Yaml>>,
    coerce: Option<Vec<String>>,
    /// Default `false`.
    #[serde(deserialize_with = "boolean")]
    ignore_added: bool,
}

/// `{abs: N}` and/or `{rel: N}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTolerance {
    abs: Option<f64>,
    rel: Option<f64>,
}

/// `{path, regex, replace}`; `replace` defaults to the empty string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    path: String,
    regex: String,
    replace: Option<String>,
}

/// `true` or `false` (or nothing), worded for the user when it is neither.
fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Yaml::deserialize(d)? {
        Yaml::Null => Ok(false),
        Yaml::Bool(b) => Ok(b),
        other => Err(D::Error::custom(format!(
            "expected true or false, got {}",
            yaml::short(&other)
        ))),
    }
}

/// Compiles one rules text into `set`, adding every problem found to `problems`.
pub(super) fn file(file: &Path, text: &str, set: &mut RuleSet, problems: &mut Vec<Problem>) {
    let first = problems.len();
    compile(file, text, set, problems, first);
    yaml::cap(file, problems, first);
}

/// [`file`], with the problems of this file starting at `first`: checking stops once they pass
/// the cap ([`yaml::room`]).
fn compile(file: &Path, text: &str, set: &mut RuleSet, problems: &mut Vec<Problem>, first: usize) {
    let doc = match yaml::parse(file, text) {
        Ok(d) => d,
        Err(p) => {
            problems.push(p);
            return;
        }
    };
    let top = match doc {
        Yaml::Mapping(m) => m,
        // An empty file holds no rules.
        Yaml::Null => return,
        _ => {
            problems.push(Problem::new(
                file,
                Some(1),
                "expected a mapping with `version`, `endpoints` and `rules`",
            ));
            return;
        }
    };
    let lines = LineIndex::new(text);
    let mut problem = |line: Option<usize>, reason: String| {
        problems.push(Problem::new(file, line, reason));
    };
    let raw: RawFile = by_key(&top, |key, reason| problem(lines.key_path(&[key]), reason));
    match raw.version {
        Some(1) => {}
        Some(v) => problem(
            lines.key_path(&["version"]),
            format!("unsupported version {v}: only 1 is known"),
        ),
        // Absent or null; anything else was refused by `by_key` and is reported already.
        None if top.get("version").is_none_or(Yaml::is_null) => problem(
            lines.top_key("version").or(Some(1)),
            "missing `version: 1`".into(),
        ),
        None => {}
    }
    let mut bad = 0;
    for e in raw.endpoints.iter().flatten() {
        match EndpointPattern::parse(e) {
            Ok(p) => set.endpoints.push(p),
            // Past the cap, checking stops (the count is all `yaml::cap` needs).
            Err(_) if bad > yaml::MAX_PROBLEMS => break,
            Err(err) => {
                bad += 1;
                problem(
                    lines
                        .find_after("endpoints:", e)
                        .or_else(|| lines.key_path(&["endpoints"])),
                    format!("endpoints: {err}"),
                )
            }
        }
    }
    let starts = lines.list_item_starts("rules");
    for (i, item) in raw.rules.iter().flatten().enumerate() {
        if !yaml::room(problems, first) {
            break;
        }
        let start = starts.get(i).copied();
        let end = starts.get(i + 1).copied();
        let scope = item.get("match").and_then(|m| m.as_str()).unwrap_or("?");
        let label = format!("rule {} ({scope:?})", i + 1);
        let (rule, found) = rule(item);
        if found.is_empty() {
            set.rules.push(rule);
        }
        for (key, reason) in found {
            let room = yaml::room(problems, first);
            problems.push(Problem {
                file: file.to_path_buf(),
                // A key not found on its own line (a flow mapping) is placed at the rule.
                line: key
                    .filter(|_| room)
                    .and_then(|k| lines.key_between(&k, start, end))
                    .or(start)
                    .or_else(|| lines.key_path(&["rules"])),
                rule: Some(label.clone()),
                reason,
            });
        }
    }
}

/// A problem inside a rule: the key it is about (`None`: the rule as a whole) and the reason.
type Found = Vec<(Option<String>, String)>;

/// Compiles one rule; it is only kept when nothing was found.
fn rule(item: &Yaml) -> (Rule, Found) {
    let mut found = Found::new();
    let mut rule = Rule {
        scope: EndpointPattern::any(),
        ignore_headers: Vec::new(),
        paths: Vec::new(),
        ignore_added: false,
    };
    let Yaml::Mapping(m) = item else {
        found.push((None, "expected a mapping".into()));
        return (rule, found);
    };
    let raw: RawRule = by_key(m, |key, reason| found.push((Some(key.into()), reason)));
    match raw.scope {
        Some(s) => match EndpointPattern::parse(&s) {
            Ok(p) => rule.scope = p,
            Err(e) => found.push((Some("match".into()), format!("match: {e}"))),
        },
        // Absent or null; anything else was refused by `by_key` and is reported already.
        None if m.get("match").is_none_or(Yaml::is_null) => found.push((
            None,
            "missing `match` (use \"*\" for every endpoint)".into(),
        )),
        None => {}
    }
    let mut path =
        |key: &str, src: &str, action: Action, found: &mut Found| match PathPattern::parse(src) {
            Ok(p) => rule.paths.push((p, action)),
            Err(e) => found.push((Some(key.into()), format!("{key}: {e}"))),
        };
    for (key, list, action) in [
        ("ignore", &raw.ignore, Action::Ignore),
        ("unordered", &raw.unordered, Action::Unordered),
        ("coerce", &raw.coerce, Action::Coerce),
    ] {
        for s in list.iter().flatten() {
            path(key, s, action.clone(), &mut found);
        }
    }
    for (p, k) in raw.keyed.iter().flatten() {
        match (p.as_str(), k.as_str()) {
            (Some(p), Some(k)) if !k.is_empty() => {
                path("keyed", p, Action::Keyed(k.to_string()), &mut found)
            }
            _ => found.push((
                Some("keyed".into()),
                format!(
                    "keyed: expected `\"/path\": key_field`, got {}: {}",
                    yaml::short(p),
                    yaml::short(k)
                ),
            )),
        }
    }
    for (p, t) in raw.tolerance.iter().flatten() {
        match (p.as_str(), tolerance(t)) {
            (Some(p), Ok(t)) => path("tolerance", p, Action::Tolerance(t), &mut found),
            (None, _) => found.push((
                Some("tolerance".into()),
                format!("tolerance: path must be a string, got {}", yaml::short(p)),
            )),
            (Some(p), Err(e)) => {
                found.push((Some("tolerance".into()), format!("tolerance {p:?}: {e}")))
            }
        }
    }
    for item in raw.rewrite.iter().flatten() {
        match rewrite(item) {
            Ok((p, rw)) => path("rewrite", &p, Action::Rewrite(Arc::new(rw)), &mut found),
            Err(e) => found.push((Some("rewrite".into()), format!("rewrite: {e}"))),
        }
    }
    for h in raw.ignore_headers.iter().flatten() {
        match HeaderPattern::parse(h) {
            Ok(p) => rule.ignore_headers.push(p),
            Err(e) => found.push((
                Some("ignore_headers".into()),
                format!("ignore_headers: {e}"),
            )),
        }
    }
    rule.ignore_added = raw.ignore_added;
    (rule, found)
}

/// Deserialises a mapping into `T` key by key: each key `T` refuses is reported
/// (`report(key, reason)`) and left out; the keys it accepts make the `T`. Every field of `T`
/// has a default, so the keys accepted one by one are accepted together.
fn by_key<T: DeserializeOwned + Default>(m: &Mapping, mut report: impl FnMut(&str, String)) -> T {
    let mut good = Mapping::new();
    for (k, v) in m {
        let key = k.as_str().unwrap_or("?");
        match yaml::check::<T>(&yaml::one_key(k, v)) {
            Ok(()) => {
                good.insert(k.clone(), v.clone());
            }
            Err(e) => report(
                key,
                match yaml::unknown_key(&e) {
                    Some((k, expected)) => format!("unknown key `{k}` (expected {expected})"),
                    None => format!("{key}: {}", yaml::message(&e)),
                },
            ),
        }
    }
    serde_yaml_ng::from_value(Yaml::Mapping(good)).unwrap_or_default()
}

/// Deserialises one entry of a rule's map or list (`tolerance`, `rewrite`); `what` names the
/// form expected, for a value that is not a mapping at all.
fn entry<T: DeserializeOwned>(v: &Yaml, what: &str) -> Result<T, String> {
    if !matches!(v, Yaml::Mapping(_)) {
        return Err(format!("expected {what}, got {}", yaml::short(v)));
    }
    serde_yaml_ng::from_value(v.clone()).map_err(|e| match yaml::unknown_key(&e) {
        Some((k, expected)) => format!("unknown key {k:?} (expected {expected})"),
        None => yaml::message(&e),
    })
}

fn tolerance(v: &Yaml) -> Result<Tolerance, String> {
    let raw: RawTolerance = entry(v, "{abs: N} and/or {rel: N}")?;
    let bound = |name: &str, n: Option<f64>| match n {
        Some(n) if !(n.is_finite() && n >= 0.0) => {
            Err(format!("{name} must be a non-negative number, got {n}"))
        }
        _ => Ok(n),
    };
    let t = Tolerance {
        abs: bound("abs", raw.abs)?,
        rel: bound("rel", raw.rel)?,
    };
    if t.abs.is_none() && t.rel.is_none() {
        return Err("needs abs or rel".into());
    }
    Ok(t)
}

fn rewrite(v: &Yaml) -> Result<(String, Rewrite), String> {
    let raw: RawRewrite = entry(v, "{path, regex, replace}")?;
    let regex = Regex::new(&raw.regex).map_err(|e| format!("bad regex {:?}: {e}", raw.regex))?;
    let replace = raw.replace.unwrap_or_default();
    Ok((raw.path, Rewrite { regex, replace }))
}
