//! `/metrics` in the Prometheus text exposition format (version 0.0.4), with DESIGN.md's names.
//!
//! Statistics come from [`Stats`]; gauges and counters owned by other parts (the proxy's
//! `shadowdiff_shadow_in_flight`, each sink's `shadowdiff_sink_events_total`) are reported by
//! [`MetricsSource`]s the caller registers. Samples of one name from several sources are merged
//! under one `# HELP`/`# TYPE` header, as the format requires.

use crate::ingest::SHADOW_IN_FLIGHT;
use crate::pipeline::metrics::SINK_EVENTS_TOTAL;
pub use crate::pipeline::metrics::{MetricFamily, MetricKind, MetricsSource};
use crate::stats::{HistogramBuckets, Stats, Window};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Escapes a label value: backslash, double quote and line feed (text format 0.0.4).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric. `window`: the span of `shadowdiff_divergence_ratio`.
pub fn render(stats: &Stats, window: Window, sources: &[Arc<dyn MetricsSource>]) -> String {
    let snap = stats.metrics_snapshot(window);
    let mut out = String::with_capacity(4096 + snap.len() * 4096);

    header(
        &mut out,
        "shadowdiff_exchanges_total",
        "counter",
        "Exchanges observed since start, by endpoint and verdict.",
    );
    for e in &snap {
        for (k, n) in &e.verdicts {
            let l = labels(&[("endpoint", &e.endpoint), ("verdict", k.as_str())]);
            let _ = writeln!(out, "shadowdiff_exchanges_total{l} {n}");
        }
    }

    header(
        &mut out,
        "shadowdiff_shadow_skipped_total",
        "counter",
        "Exchanges not compared since start, by reason.",
    );
    let mut skips: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &snap {
        for (r, n) in &e.skips {
            *skips.entry(r.as_str()).or_default() += n;
        }
    }
    for r in crate::compare::SkipReason::ALL {
        let n = skips.get(r.as_str()).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "shadowdiff_shadow_skipped_total{} {n}",
            labels(&[("reason", r.as_str())])
        );
    }

    let (skew, skew_n, skew_sum) = stats.send_skew().cumulative();
    header(
        &mut out,
        "shadowdiff_shadow_send_skew_seconds",
        "histogram",
        "Time between the earliest and latest of the primary, candidate and secondary sends of an exchange.",
    );
    for (le, n) in skew {
        let _ = writeln!(
            out,
            "shadowdiff_shadow_send_skew_seconds_bucket{{le=\"{}\"}} {n}",
            value(le as f64 / 1e6)
        );
    }
    let _ = writeln!(
        out,
        "shadowdiff_shadow_send_skew_seconds_bucket{{le=\"+Inf\"}} {skew_n}"
    );
    let _ = writeln!(
        out,
        "shadowdiff_shadow_send_skew_seconds_sum {}",
        value(skew_sum as f64 / 1e6)
    );
    let _ = writeln!(out, "shadowdiff_shadow_send_skew_seconds_count {skew_n}");

    header(
        &mut out,
        UPSTREAM_LATENCY,
        "histogram",
        "Upstream response latency since start, by side and endpoint (derived from HDR histograms).",
    );
    for e in &snap {
        for (side, h) in [("primary", &e.primary), ("candidate", &e.candidate)] {
            histogram(
                &mut out,
                UPSTREAM_LATENCY,
                &[("side", side), ("endpoint", &e.endpoint)],
                h,
            );
        }
    }

    header(
        &mut out,
        LATENCY_DELTA,
        "histogram",
        "Candidate minus primary latency of the same exchange (both answered) since start, by endpoint; negative: the candidate was faster (derived from HDR histograms).",
    );
    for e in &snap {
        histogram(
            &mut out,
            LATENCY_DELTA,
            &[("endpoint", &e.endpoint)],
            &e.delta,
        );
    }

    header(
        &mut out,
        "shadowdiff_divergence_ratio",
        "gauge",
        &format!(
            "(mismatch + candidate_error) / compared exchanges over the last {}, by endpoint; NaN with no samples.",
            window.label()
        ),
    );
    for e in &snap {
        let r = if e.window_samples == 0 {
            f64::NAN
        } else {
            e.window_divergent as f64 / e.window_samples as f64
        };
        let _ = writeln!(
            out,
            "shadowdiff_divergence_ratio{} {}",
            labels(&[("endpoint", &e.endpoint)]),
            value(r)
        );
    }
    header(
        &mut out,
        "shadowdiff_divergence_samples",
        "gauge",
        &format!(
            "Compared exchanges (all verdicts but skipped) over the last {}, by endpoint: the n behind shadowdiff_divergence_ratio.",
            window.label()
        ),
    );
    for e in &snap {
        let _ = writeln!(
            out,
            "shadowdiff_divergence_samples{} {}",
            labels(&[("endpoint", &e.endpoint)]),
            e.window_samples
        );
    }

    // Caller-registered families, merged by name. The two DESIGN.md names are always present
    // (with no samples until someone reports them), so dashboards find them.
    let mut extra: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for (name, help, kind) in [
        (
            SHADOW_IN_FLIGHT,
            "Shadow requests in flight (candidate and secondary).",
            MetricKind::Gauge,
        ),
        (
            SINK_EVENTS_TOTAL,
            "Events handed to each sink, by sink and outcome.",
            MetricKind::Counter,
        ),
    ] {
        extra.insert(
            name.to_string(),
            MetricFamily {
                name: name.into(),
                help: help.into(),
                kind,
                samples: Vec::new(),
            },
        );
    }
    for s in sources {
        for f in s.collect() {
            if !valid_name(&f.name) {
                continue;
            }
            match extra.get_mut(&f.name) {
                Some(e) => e.samples.extend(f.samples),
                None => {
                    extra.insert(f.name.clone(), f);
                }
            }
        }
    }
    for f in extra.values() {
        header(&mut out, &f.name, f.kind.as_str(), &f.help);
        for (ls, v) in &f.samples {
            let pairs: Vec<(&str, &str)> = ls
                .iter()
                .filter(|(k, _)| valid_name(k))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let _ = writeln!(out, "{}{} {}", f.name, labels(&pairs), value(*v));
        }
    }
    out
}

/// `shadowdiff_upstream_latency_seconds{side,endpoint}` (DESIGN.md).
pub const UPSTREAM_LATENCY: &str = "shadowdiff_upstream_latency_seconds";
/// `shadowdiff_latency_delta_seconds{endpoint}`: the paired delta (candidate − primary), which
/// DESIGN.md's API carries and its metric list does not (README, "Where this goes beyond").
pub const LATENCY_DELTA: &str = "shadowdiff_latency_delta_seconds";

fn histogram(out: &mut String, name: &str, base: &[(&str, &str)], h: &HistogramBuckets) {
    let with_le = |le: &str| {
        let mut l = base.to_vec();
        l.push(("le", le));
        labels(&l)
    };
    for (le, n) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{} {n}", with_le(&format!("{le}")));
    }
    let _ = writeln!(out, "{name}_bucket{} {}", with_le("+Inf"), h.count);
    let l = labels(base);
    let _ = writeln!(out, "{name}_sum{l} {}", value(h.sum_seconds));
    let _ = writeln!(out, "{name}_count{l} {}", h.count);
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: a name the format accepts (caller-supplied names are checked so a
/// typo cannot break the whole scrape).
fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"GET /a"b\c"#), r#"GET /a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert!(valid_name("shadowdiff_x:y"));
        assert!(!valid_name("9x"));
        assert!(!valid_name("a-b"));
    }
}
