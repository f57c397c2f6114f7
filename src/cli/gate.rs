//! `shadowdiff gate`: asks a running sidecar's admin API for the release verdict and renders it.

use super::GateArgs;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;

pub(super) fn run(args: &GateArgs) -> anyhow::Result<ExitCode> {
    use crate::admin::client::{GateQuery, TOKEN_ENV, fetch_gate, token_from};
    let env = std::env::var(TOKEN_ENV).ok();
    let token = token_from(args.token_file.as_deref(), env.as_deref())?;
    let q = GateQuery {
        max_divergence: args.max_divergence.clone(),
        min_samples: args.min_samples,
        min_samples_for: args.min_samples_for.clone(),
        method: args.method.clone(),
        endpoint: args.endpoint.clone(),
        window: args.window.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt.block_on(fetch_gate(&args.url, &q, token.as_ref(), args.timeout))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(out, "{}", render_gate(&report))?;
    }
    Ok(ExitCode::from(report.verdict.exit_code()))
}

/// The gate report as a table: one line per endpoint, then the pool and the verdict.
pub fn render_gate(r: &crate::stats::GateReport) -> String {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.3}%", v * 100.0));
    let ci = |c: [f64; 2]| format!("[{:.3}%, {:.3}%]", c[0] * 100.0, c[1] * 100.0);
    let width = r
        .endpoints
        .iter()
        .map(|e| e.endpoint.chars().count())
        .chain([8])
        .max()
        .unwrap_or(8);
    let mut s = format!(
        "{:<width$}  {:>9}  {:>9}  {:>20}  {:>9}  {:>8}  verdict\n",
        "endpoint", "samples", "rate", "ci95", "threshold", "min"
    );
    let mut row =
        |name: &str, n: u64, rate: Option<f64>, c: [f64; 2], t: f64, min: u64, v: &str| {
            s.push_str(&format!(
                "{name:<width$}  {n:>9}  {:>9}  {:>20}  {:>9}  {min:>8}  {v}\n",
                pct(rate),
                ci(c),
                pct(Some(t))
            ));
        };
    for e in &r.endpoints {
        row(
            &e.endpoint,
            e.samples,
            e.divergence_rate,
            e.ci95,
            e.max_divergence,
            e.min_samples,
            e.verdict.as_str(),
        );
    }
    row(
        "(all)",
        r.samples,
        r.divergence_rate,
        r.ci95,
        r.max_divergence,
        r.min_samples,
        r.pool_verdict.as_str(),
    );
    let method = match r.method {
        crate::stats::GateMethod::Sequential => "sequential: anytime-valid 95% confidence sequence",
        crate::stats::GateMethod::Wilson => "wilson: fixed-sample 95% interval",
    };
    s.push_str(&format!(
        "\ngate: {} (window {}, min samples {} for {}; {method})\n",
        r.verdict.as_str(),
        r.window,
        r.min_samples,
        r.min_samples_for.as_str()
    ));
    s
}
