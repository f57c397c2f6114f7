//! Rules suggested for learned noise, with the evidence behind each (issue 16, item 5).
//!
//! For a noisy field the model keeps, from the exchanges where primary and secondary differed on
//! it, what their values looked like ([`Values`]), in constant memory per field:
//!
//! - **values never repeat** (ids, timestamps: at least [`MIN_EVIDENCE`] values seen, none of them
//!   twice) → `ignore`. A tolerance on such a field is fitted to values that will not come back:
//!   a timestamp in epoch milliseconds differs by `rel: 2e-13` today and by more tomorrow;
//! - **numbers whose relative spread is small (< 1%) and stable** → `tolerance {rel: 1.5 × the
//!   largest seen}`. Stable: the tolerance that would have been suggested halfway through already
//!   covered every later difference — the largest relative difference last grew past 1.5× its
//!   previous value in the first half of the numeric observations;
//! - otherwise (strings that repeat, spreads that keep growing) → `ignore`;
//! - arrays whose only noise is order → `unordered`; headers → `ignore_headers`; the status and
//!   text bodies get no rule (text noise is judged line by line in each exchange).

use super::FieldCounts;
use crate::compare::DiffKind;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// Values (or numeric pairs) needed before the evidence may decide between `ignore` and
/// `tolerance`; with less, a field is ignored (the safe side for a suggestion to be reviewed).
pub const MIN_EVIDENCE: u64 = 10;
/// Distinct values remembered per field to detect repeats (memory bound: ≈ 0.5 KiB per noisy
/// field). Beyond it, a value not remembered counts as new, so a field with more distinct values
/// than this reads as never repeating — as it should.
const REMEMBERED: usize = 32;
/// Margin of a suggested tolerance over the largest relative difference seen.
const MARGIN: f64 = 1.5;
/// Largest relative spread a tolerance is suggested for; beyond, the field is ignored.
const MAX_REL: f64 = 0.01;

/// What the primary and secondary values of one field looked like where they differed.
#[derive(Debug, Clone, Default)]
pub(super) struct Values {
    /// Values observed (both sides of each difference).
    seen: u64,
    /// Of those, values equal to one remembered earlier.
    repeats: u64,
    remembered: HashSet<u64>,
    /// Differences where both sides were numbers.
    numeric: u64,
    /// Differences where at least one side was not a number.
    non_numeric: u64,
    /// Largest relative difference between the two numbers.
    max_rel: f64,
    /// The numeric observation (1-based) at which `max_rel` last grew past `MARGIN` × its
    /// previous value: a tolerance suggested just before would have failed there.
    last_breach: u64,
}

impl Values {
    pub(super) fn observe(&mut self, primary: &Value, secondary: &Value) {
        for v in [primary, secondary] {
            self.seen += 1;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v.to_string().hash(&mut h);
            let h = h.finish();
            if self.remembered.contains(&h) {
                self.repeats += 1;
            } else if self.remembered.len() < REMEMBERED {
                self.remembered.insert(h);
            }
        }
        match relative_delta(primary, secondary) {
            Some(r) => {
                self.numeric += 1;
                if self.numeric == 1 || r > MARGIN * self.max_rel {
                    self.last_breach = self.numeric;
                }
                self.max_rel = self.max_rel.max(r);
            }
            None => self.non_numeric += 1,
        }
    }

    fn never_repeat(&self) -> bool {
        self.seen >= MIN_EVIDENCE && self.repeats == 0
    }

    /// Numeric observations since the spread last grew past the margin.
    fn stable_for(&self) -> u64 {
        self.numeric - self.last_breach
    }

    fn stable(&self) -> bool {
        self.numeric >= MIN_EVIDENCE && 2 * self.stable_for() >= self.numeric
    }
}

fn relative_delta(a: &Value, b: &Value) -> Option<f64> {
    let (x, y) = (a.as_f64()?, b.as_f64()?);
    let m = x.abs().max(y.abs());
    Some(if m == 0.0 { 0.0 } else { (x - y).abs() / m })
}

/// The kind of rule suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestedRule {
    Ignore,
    IgnoreHeaders,
    Unordered,
    Tolerance,
}

/// The evidence behind a suggestion, as counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Exchanges where primary and secondary differed on the field, of `samples`.
    pub noise: u64,
    pub samples: u64,
    /// Values seen where they differed (primary and secondary sides).
    pub values: u64,
    /// Of those, distinct (values not seen before; exact up to 32 remembered values).
    pub distinct: u64,
    /// Differences where both sides were numbers.
    pub numeric: u64,
    /// Largest relative difference between the numbers, when any were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rel: Option<f64>,
    /// Numeric differences since the largest relative difference last grew past 1.5×.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_for: Option<u64>,
}

/// One suggested rule for one noisy field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub rule: SuggestedRule,
    /// For `tolerance`: the relative bound suggested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rel: Option<f64>,
    /// Why this rule, in words (also the comment in the YAML).
    pub reason: String,
    pub evidence: Evidence,
}

/// The rule for a noisy field, or `None` when no rule applies (status, text bodies).
pub(super) fn suggest(field: &str, c: &FieldCounts, samples: u64) -> Option<Suggestion> {
    let v = &c.values;
    let numeric = v.numeric > 0;
    let evidence = Evidence {
        noise: c.noise,
        samples,
        values: v.seen,
        distinct: v.seen - v.repeats,
        numeric: v.numeric,
        max_rel: numeric.then_some(v.max_rel),
        stable_for: numeric.then(|| v.stable_for()),
    };
    let noisy = format!("noisy in {} of {samples}", c.noise);
    let (rule, rel, reason) = if field.starts_with("@headers/") {
        (SuggestedRule::IgnoreHeaders, None, noisy)
    } else if field.starts_with('@') || c.kinds.contains(&DiffKind::Body) {
        return None;
    } else if c.kinds == [DiffKind::Order] {
        (
            SuggestedRule::Unordered,
            None,
            format!("order {noisy}; the elements agree"),
        )
    } else if v.never_repeat() {
        (
            SuggestedRule::Ignore,
            None,
            format!(
                "{noisy}; values never repeat ({} seen, all distinct): an id or a timestamp",
                v.seen
            ),
        )
    } else if v.non_numeric == 0
        && v.max_rel > 0.0
        && v.max_rel < MAX_REL
        && c.kinds.iter().all(|k| *k == DiffKind::Value)
        && v.stable()
    {
        let rel = v.max_rel * MARGIN;
        (
            SuggestedRule::Tolerance,
            Some(rel),
            format!(
                "jitter {noisy}; relative spread ≤ {:.2e}, stable over the last {} of {} numbers",
                v.max_rel,
                v.stable_for(),
                v.numeric
            ),
        )
    } else {
        let why = if v.numeric >= MIN_EVIDENCE && v.non_numeric == 0 && v.max_rel < MAX_REL {
            format!(
                "spread not stable yet (grew {} of {} numbers ago)",
                v.stable_for(),
                v.numeric
            )
        } else if v.non_numeric == 0 && v.numeric >= MIN_EVIDENCE {
            format!("relative spread {:.2e} too wide for a tolerance", v.max_rel)
        } else {
            format!("{} values seen, {} distinct", v.seen, v.seen - v.repeats)
        };
        (SuggestedRule::Ignore, None, format!("{noisy}; {why}"))
    };
    Some(Suggestion {
        rule,
        rel,
        reason,
        evidence,
    })
}

/// The `diff-rules` YAML for these endpoints' suggestions (sorted by endpoint and field).
pub(super) fn rules_yaml(endpoints: &[(&str, Vec<(&str, Suggestion)>)]) -> String {
    let mut out = String::from(
        "# Learned by shadowdiff from primary-vs-secondary differences.\n# Review before committing to diff-rules/.\nversion: 1\nrules:\n",
    );
    let mut any = false;
    for (name, fields) in endpoints.iter().filter(|(_, f)| !f.is_empty()) {
        any = true;
        out.push_str(&format!("  - match: {}\n", yaml_quote(name)));
        for (key, rule) in [
            ("ignore_headers", SuggestedRule::IgnoreHeaders),
            ("ignore", SuggestedRule::Ignore),
            ("unordered", SuggestedRule::Unordered),
            ("tolerance", SuggestedRule::Tolerance),
        ] {
            let mine: Vec<&(&str, Suggestion)> =
                fields.iter().filter(|(_, s)| s.rule == rule).collect();
            if mine.is_empty() {
                continue;
            }
            out.push_str(&format!("    {key}:\n"));
            for (f, s) in mine {
                let line = match (rule, s.rel) {
                    (SuggestedRule::IgnoreHeaders, _) => {
                        format!("      - {}", yaml_quote(f.trim_start_matches("@headers/")))
                    }
                    (SuggestedRule::Tolerance, Some(rel)) => {
                        format!("      {}: {{rel: {rel:.3e}}}", yaml_quote(f))
                    }
                    _ => format!("      - {}", yaml_quote(f)),
                };
                out.push_str(&format!("{line}   # {}\n", s.reason));
            }
        }
    }
    if !any {
        out = out.replace("rules:\n", "rules: []\n");
    }
    out
}

/// Double-quoted YAML scalar (JSON string syntax is valid YAML).
pub(crate) fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}
