//! Triage (issue 16): what an acknowledged signature costs and what rule would absorb it.
//!
//! - *Expected* counts: exchanges whose (endpoint, signature) is acknowledged, over a window,
//!   counted beside the raw verdicts (the summary and the gate show both; nothing is hidden).
//!   Since start they come from the signature's cluster; over a sliding window, from the
//!   per-bucket signature counts the store keeps.
//! - The suggested rule: from the cluster's (field, kind) pairs and the recent events of the
//!   signature, an `ignore`, `tolerance` or `ignore_headers` entry per field, as a `diff-rules`
//!   YAML snippet scoped to the endpoint. Status changes and text-body hunks have no rule that
//!   absorbs them and are listed as such.
//! - The pre-check runs the real comparator on the stored samples (the recent events' published
//!   answers) twice, without rules and with the snippet alone: an event is absorbed when every
//!   difference it was published with is one the snippet removes. The current rules are not
//!   re-applied: what they absorbed was never published. An event whose published answers are
//!   truncated cannot be re-compared and is counted as `unchecked`, never as absorbed. Because
//!   the stored answers are redacted, a difference inside a redacted value may not reappear; it
//!   then counts as not absorbed (conservative).

use super::ack::Acknowledgements;
use super::noise::yaml_quote;
use super::report::ClusterField;
use super::store::{EndpointStats, Stats};
use super::window::Window;
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions, DiffKind, Difference, VerdictKind};
use crate::event::{Event, EventResponse};
use crate::exchange::{Request, Response};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// Events re-compared at most per pre-check (newest first): bounds the cost of one request.
pub const PRECHECK_EVENTS: usize = 5000;

/// Expected (acknowledged) exchanges of one endpoint over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Expected {
    /// Exchanges whose signature is acknowledged.
    pub exchanges: u64,
    /// Of those, divergent ones the gate leaves out (`exclude_from_gate`).
    pub excluded_from_gate: u64,
}

impl Expected {
    pub fn add(&mut self, o: &Expected) {
        self.exchanges += o.exchanges;
        self.excluded_from_gate += o.excluded_from_gate;
    }
}

/// The answer of `GET /api/v1/suggested-rule` (docs/api.md).
#[derive(Debug, Clone, Serialize)]
pub struct SuggestedRule {
    pub signature: String,
    pub endpoint: String,
    /// The `diff-rules` snippet; `None` when no field of the signature can be absorbed by a rule.
    pub yaml: Option<String>,
    /// Per field of the signature: the rule suggested for it, or why there is none.
    pub fields: Vec<FieldRule>,
    pub precheck: Precheck,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldRule {
    #[serde(flatten)]
    pub field: ClusterField,
    /// `ignore`, `tolerance`, `ignore_headers`, or `none`.
    pub rule: &'static str,
    /// The `abs` bound of a `tolerance`: the largest difference seen, rounded up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abs: Option<f64>,
    pub evidence: String,
}

/// What the snippet would have absorbed among the recent events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Precheck {
    /// Recent events of this signature.
    pub events: u64,
    /// Of those, absorbed: every published difference removed by the snippet.
    pub absorbed: u64,
    /// Of those, not re-comparable (truncated answers, no candidate answer).
    pub unchecked: u64,
    /// Recent divergent events of other signatures re-compared.
    pub others: u64,
    /// Of those, absorbed entirely (the snippet would hide them too).
    pub others_absorbed: u64,
    /// Of those, with at least one difference removed.
    pub others_touched: u64,
    /// How events were judged: `comparator` (re-compared) — the only method.
    pub method: &'static str,
    /// One line: "absorbs 113 of 113 events of this signature, and 0 others".
    pub summary: String,
}

impl Stats {
    /// Expected exchanges of one endpoint over a window, from the acknowledgements.
    pub(super) fn expected_of(
        &self,
        name: &str,
        ep: &EndpointStats,
        w: Window,
        now_epoch: u64,
    ) -> Expected {
        let acks = self.acknowledgements();
        let mut out = Expected::default();
        if acks.is_empty() {
            return out;
        }
        for a in acks.list().iter().filter(|a| a.endpoint == name) {
            let Some(c) = ep.clusters.get(a.signature.as_str()) else {
                continue;
            };
            let n = match w {
                Window::All => c.count,
                Window::Last(d) => ep
                    .ring
                    .covering(d, self.bucket_ms, now_epoch)
                    .filter_map(|b| b.signatures.get(a.signature.as_str()))
                    .sum(),
            };
            out.exchanges += n;
            if a.exclude_from_gate
                && matches!(
                    c.verdict,
                    VerdictKind::Mismatch | VerdictKind::CandidateError
                )
            {
                out.excluded_from_gate += n;
            }
        }
        out
    }

    /// The endpoints a signature has a cluster on.
    pub fn signature_endpoints(&self, signature: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_endpoint(|name, ep| {
            if ep.clusters.contains_key(signature) {
                out.push(name.to_string());
            }
        });
        out.sort();
        out
    }

    /// The suggested rule for a signature on an endpoint, pre-checked on the recent events;
    /// `None` when the signature has no cluster there.
    pub fn suggest_rule(&self, endpoint: &str, signature: &str) -> Option<SuggestedRule> {
        let fields = self
            .signatures(Some(endpoint))
            .into_iter()
            .find(|s| s.signature == signature)?
            .fields;
        let recent: Vec<Arc<Event>> = {
            let g = self.recent.lock();
            g.iter().rev().take(PRECHECK_EVENTS).cloned().collect()
        };
        let samples: Vec<&Event> = recent
            .iter()
            .map(|e| &**e)
            .filter(|e| e.endpoint == endpoint && e.signature.as_deref() == Some(signature))
            .collect();
        let rules = fields.iter().map(|f| rule_for(f, &samples)).collect();
        Some(build(endpoint, signature, rules, &recent))
    }

    /// The acknowledgements the statistics count as expected.
    pub fn acknowledgements(&self) -> &Arc<Acknowledgements> {
        &self.acks
    }
}

/// The rule for one field of a signature, from the published differences of its samples.
fn rule_for(f: &ClusterField, samples: &[&Event]) -> FieldRule {
    let mut abs = None;
    let (rule, evidence) = match f.kind {
        DiffKind::Status => ("none", "no rule absorbs a status change".to_string()),
        DiffKind::Body => (
            "none",
            "no rule absorbs a text-body hunk (rewrite applies to JSON values)".to_string(),
        ),
        DiffKind::Header => ("ignore_headers", "a header that differs".to_string()),
        DiffKind::Value => match numeric_spread(&f.field, samples) {
            Some((max, n)) if max > 0.0 && max.is_finite() => {
                abs = Some(round_up(max));
                (
                    "tolerance",
                    format!("numbers in all {n} samples; largest |primary − candidate| {max}"),
                )
            }
            _ => ("ignore", "values that are not all numbers".to_string()),
        },
        k => ("ignore", format!("a `{}` difference", k.as_str())),
    };
    FieldRule {
        field: f.clone(),
        rule,
        abs,
        evidence,
    }
}

/// The largest |p − c| of the field's differences over the samples, and how many there were,
/// when every one of them is a pair of numbers.
fn numeric_spread(field: &str, samples: &[&Event]) -> Option<(f64, usize)> {
    let mut max = 0.0f64;
    let mut n = 0;
    for d in samples
        .iter()
        .flat_map(|e| &e.differences)
        .filter(|d| d.field == field && d.kind == DiffKind::Value)
    {
        let (p, c) = (d.primary.as_f64()?, d.candidate.as_f64()?);
        max = max.max((p - c).abs());
        n += 1;
    }
    (n > 0).then_some((max, n))
}

/// `x` rounded up to two significant digits, so the tolerance covers what was seen.
fn round_up(x: f64) -> f64 {
    let mag = 10f64.powf(x.log10().floor() - 1.0);
    let r = (x / mag).ceil() * mag;
    // Printing may lose the last bit; never below what was seen.
    let printed: f64 = format!("{r:.6e}").parse().unwrap_or(r);
    if printed < x { r * 1.01 } else { printed }
}

fn snippet(endpoint: &str, signature: &str, fields: &[FieldRule]) -> Option<String> {
    let of = |rule: &str| -> Vec<&FieldRule> { fields.iter().filter(|f| f.rule == rule).collect() };
    let (ignore, tolerance, headers) = (of("ignore"), of("tolerance"), of("ignore_headers"));
    if ignore.is_empty() && tolerance.is_empty() && headers.is_empty() {
        return None;
    }
    let mut out = format!(
        "# Suggested by shadowdiff for signature {} (review before committing to diff-rules/).\nversion: 1\nrules:\n  - match: {}\n",
        yaml_quote(signature).trim_matches('"'),
        yaml_quote(endpoint)
    );
    let list = |out: &mut String, key: &str, items: Vec<String>| {
        if !items.is_empty() {
            out.push_str(&format!("    {key}: [{}]\n", items.join(", ")));
        }
    };
    let names = |v: &[&FieldRule], strip: &str| -> Vec<String> {
        let set: BTreeSet<String> = v
            .iter()
            .map(|f| yaml_quote(f.field.field.trim_start_matches(strip)))
            .collect();
        set.into_iter().collect()
    };
    list(&mut out, "ignore_headers", names(&headers, "@headers/"));
    list(&mut out, "ignore", names(&ignore, ""));
    if !tolerance.is_empty() {
        out.push_str("    tolerance:\n");
        for f in tolerance {
            out.push_str(&format!(
                "      {}: {{abs: {}}}\n",
                yaml_quote(&f.field.field),
                f.abs.unwrap_or(0.0)
            ));
        }
    }
    Some(out)
}

fn build(
    endpoint: &str,
    signature: &str,
    fields: Vec<FieldRule>,
    recent: &[Arc<Event>],
) -> SuggestedRule {
    // An endpoint name that is no pattern (the `OTHER` fold) cannot scope a rule.
    let (yaml, rules) = match snippet(endpoint, signature, &fields) {
        Some(y) => match RuleSet::from_yaml(&y) {
            Ok(r) => (Some(y), Some(r)),
            Err(e) => {
                tracing::debug!(error = %e, "suggested rule does not load");
                (None, None)
            }
        },
        None => (None, None),
    };
    let mut pre = Precheck {
        method: "comparator",
        ..Precheck::default()
    };
    let plain = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
    let with = rules.map(|r| Comparator::new(Arc::new(r), CompareOptions::default()));
    for e in recent {
        let mine = e.endpoint == endpoint && e.signature.as_deref() == Some(signature);
        let published: Vec<&Difference> = e.differences.iter().filter(|d| !d.noise).collect();
        if !mine
            && (published.is_empty()
                || !matches!(
                    e.verdict,
                    VerdictKind::Mismatch | VerdictKind::CandidateError
                ))
        {
            continue;
        }
        let removed = match (&with, sides(e)) {
            (Some(with), Some((req, p, c))) => {
                let key = |d: &Difference| (d.path.clone(), d.kind);
                let found = |cmp: &Comparator| -> HashSet<_> {
                    cmp.compare_responses(&req, Some(&e.endpoint), &p, &c)
                        .differences
                        .iter()
                        .map(key)
                        .collect()
                };
                let (before, after) = (found(&plain), found(with));
                let gone = published
                    .iter()
                    .filter(|d| {
                        let k = key(d);
                        before.contains(&k) && !after.contains(&k)
                    })
                    .count();
                Some(gone)
            }
            (None, Some(_)) => Some(0),
            (_, None) => None,
        };
        match (mine, removed) {
            (true, None) => {
                pre.events += 1;
                pre.unchecked += 1;
            }
            (true, Some(gone)) => {
                pre.events += 1;
                pre.absorbed += u64::from(gone == published.len() && gone > 0);
            }
            (false, None) => {}
            (false, Some(gone)) => {
                pre.others += 1;
                pre.others_absorbed += u64::from(gone == published.len());
                pre.others_touched += u64::from(gone > 0);
            }
        }
    }
    pre.summary = format!(
        "absorbs {} of {} events of this signature{}, and {} others",
        pre.absorbed,
        pre.events,
        if pre.unchecked > 0 {
            format!(" ({} not re-comparable: truncated)", pre.unchecked)
        } else {
            String::new()
        },
        pre.others_absorbed
    );
    SuggestedRule {
        signature: signature.to_string(),
        endpoint: endpoint.to_string(),
        yaml,
        fields,
        precheck: pre,
    }
}

/// The request and both answers of a published event, as the comparator takes them; `None`
/// when they cannot be re-compared (truncated, or no candidate answer).
fn sides(e: &Event) -> Option<(Request, Response, Response)> {
    if e.truncated {
        return None;
    }
    let c = e.candidate.as_ref().filter(|c| c.error.is_none())?;
    let req = Request {
        method: e.request.method.clone(),
        path: e.request.path.clone(),
        query: e.request.query.clone(),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::new(),
    };
    Some((req, response(&e.primary)?, response(c)?))
}

fn response(r: &EventResponse) -> Option<Response> {
    let mut headers = http::HeaderMap::new();
    for (k, v) in &r.headers {
        // A published body is decoded: its content coding no longer applies.
        if k.eq_ignore_ascii_case("content-encoding") || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let body = match &r.body {
        serde_json::Value::Null => bytes::Bytes::new(),
        serde_json::Value::String(s) => bytes::Bytes::from(s.clone()),
        v => bytes::Bytes::from(v.to_string()),
    };
    Some(Response {
        status: r.status?,
        headers,
        body,
        latency: std::time::Duration::ZERO,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_rounds_up_to_two_digits() {
        assert_eq!(round_up(0.013), 0.013);
        assert_eq!(round_up(0.0131), 0.014);
        assert_eq!(round_up(1.0), 1.0);
        assert!(round_up(123.4) >= 123.4);
    }
}
