//! `shadowdiff demo`: sample legacy and candidate services, the sidecar in front, recorded
//! traffic driven through it, and the summary a newcomer should see first. Everything binds
//! 127.0.0.1; nothing leaves the machine.

pub mod services;

use crate::app::{Settings, Sidecar};
use crate::compare::rules::RuleSet;
use crate::config::{Config, Upstream};
use crate::stats::{GateConfig, Stats, Window};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The demo's traffic and rules, embedded so `shadowdiff demo` works from any directory.
const TRAFFIC: &str = include_str!("../../sample-traffic/demo.jsonl");
const RULES: &[(&str, &str)] = &[
    (
        "diff-rules/default.yaml",
        include_str!("../../diff-rules/default.yaml"),
    ),
    (
        "diff-rules/volatile-fields.yaml",
        include_str!("../../diff-rules/volatile-fields.yaml"),
    ),
    (
        "sample-traffic/demo-rules.yaml",
        include_str!("../../sample-traffic/demo-rules.yaml"),
    ),
];

/// Options of `shadowdiff demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after the run instead of serving the admin API until Ctrl-C.
    pub exit: bool,
    /// Run a secondary legacy instance for noise cancellation.
    pub secondary: bool,
    /// Admin address; port 0 picks a free one.
    pub admin: SocketAddr,
    /// Concurrent client connections driving the traffic.
    pub concurrency: usize,
}

async fn serve_sample(build: services::Build) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, services::router(build)).await;
    });
    Ok(addr)
}

/// Serves one sample service on `addr` until Ctrl-C (`shadowdiff demo --service`).
pub async fn serve_one(build: services::Build, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!(
        "{build:?} sample service on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, services::router(build))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn upstream(a: SocketAddr) -> anyhow::Result<Upstream> {
    Upstream::parse(&format!("http://{a}")).map_err(|e| anyhow::anyhow!(e))
}

/// Runs the demo; returns the gate verdict's exit code semantics are not used: the demo succeeds
/// when the run completed, whatever the candidate's quality.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let legacy = serve_sample(services::Build::Legacy).await?;
    let candidate = serve_sample(services::Build::Candidate).await?;
    let secondary = if opts.secondary {
        Some(serve_sample(services::Build::Legacy).await?)
    } else {
        None
    };
    let sources: Vec<(&Path, &str)> = RULES.iter().map(|(n, t)| (Path::new(*n), *t)).collect();
    let rules = RuleSet::from_sources(&sources).map_err(|e| anyhow::anyhow!("{e}"))?;

    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        primary: Some(upstream(legacy)?),
        candidate: Some(upstream(candidate)?),
        secondary: secondary.map(upstream).transpose()?,
        admin: Some(opts.admin.into()),
        instance: Some("demo".into()),
        ..Config::default()
    };
    let settings = Settings {
        config,
        rules,
        // Statistics only: a demo must not write event files where it was started.
        default_file_sink: false,
        // The default port may be taken (another sidecar): any free port will do for a demo.
        admin_fallback: true,
        // The demo's rules are embedded: nothing to reload.
        reload: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sidecar = Sidecar::start(settings, async move {
        let _ = stop_rx.await;
    })
    .await
    .context("cannot start the sidecar")?;
    let proxy = sidecar.proxy_addr();
    let admin = sidecar.admin_addr();
    let stats = sidecar.stats().clone();
    let noise = sidecar.noise().cloned();

    eprintln!("legacy   http://{legacy}\ncandidate http://{candidate}");
    if let Some(s) = secondary {
        eprintln!("secondary http://{s} (a second legacy instance: noise cancellation)");
    }
    eprintln!("sidecar  http://{proxy}\nadmin    http://{admin}/  (API, /metrics, review UI)\n");

    let sent = drive(proxy, opts.concurrency.max(1)).await?;
    // Wait until every request has been observed (compared or skipped): a readiness wait on the
    // statistics, bounded so a lost shadow cannot hang the demo.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let total = stats.summary(Window::All, 0).totals.exchanges;
        if total >= sent as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    print_report(&stats);
    if let Some(n) = &noise {
        println!(
            "\n== learned noise (primary vs secondary; rules to commit at http://{admin}/api/v1/noise/rules)"
        );
        for ep in n.snapshot() {
            for f in ep.fields.iter().filter(|f| f.noise > 0) {
                println!(
                    "{:<28} {:<12} candidate differs {:>4}, secondary {:>4} of {:>4}: {:?}",
                    ep.endpoint, f.field, f.raw, f.noise, ep.samples, f.status
                );
            }
        }
    }
    if !opts.exit {
        eprintln!("\nadmin API and review UI stay up at http://{admin}/ — Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    sidecar.join().await?;
    Ok(())
}

/// Sends the embedded traffic through the sidecar with a progress line; returns how many.
async fn drive(proxy: SocketAddr, concurrency: usize) -> anyhow::Result<usize> {
    let lines: Vec<serde_json::Value> = TRAFFIC
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let total = lines.len();
    let lines = Arc::new(lines);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (lines, next, done, client) =
            (lines.clone(), next.clone(), done.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(line) = lines.get(i) else { break };
                let r = &line["request"];
                let mut uri = format!("http://{proxy}{}", r["path"].as_str().unwrap_or("/"));
                if let Some(q) = r["query"].as_str() {
                    uri.push('?');
                    uri.push_str(q);
                }
                let body = if r["body"].is_null() {
                    Bytes::new()
                } else {
                    Bytes::from(r["body"].to_string())
                };
                let mut req = http::Request::builder()
                    .method(r["method"].as_str().unwrap_or("GET"))
                    .uri(uri);
                if let Some(h) = r["headers"].as_object() {
                    for (k, v) in h {
                        if let Some(v) = v.as_str() {
                            req = req.header(k, v);
                        }
                    }
                }
                if let Ok(req) = req.body(Full::new(body))
                    && let Ok(resp) = client.request(req).await
                {
                    let _ = resp.into_body().collect().await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                let d = done.load(Ordering::Relaxed);
                let filled = d * 40 / total.max(1);
                eprint!(
                    "\rdriving sample-traffic/demo.jsonl [{}{}] {d}/{total}",
                    "#".repeat(filled),
                    " ".repeat(40 - filled)
                );
                let _ = std::io::stderr().flush();
                if d >= total {
                    eprintln!();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for t in tasks {
        t.await?;
    }
    let _ = progress.await;
    Ok(total)
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn print_report(stats: &Stats) {
    print_summary(stats);
    let g = stats.gate(
        Window::All,
        &GateConfig {
            max_divergence: 0.01,
            min_samples: 100,
            ..GateConfig::default()
        }
        .params(Default::default()),
    );
    println!(
        "\n== gate (max divergence 1%, min 100 samples, {}): {} — divergence {} of {} (95% CI {}–{})",
        g.method.as_str(),
        g.verdict.as_str().to_uppercase(),
        pct(g.divergence_rate),
        g.samples,
        pct(Some(g.ci95[0])),
        pct(Some(g.ci95[1]))
    );
}

/// The run's figures on stdout: totals by verdict and skip reason, the divergence rate, each
/// endpoint's top fields, the top signatures (the demo's report and `replay`'s).
pub fn print_summary(stats: &Stats) {
    print!("{}", summary_text(stats));
}

/// [`print_summary`]'s text (`capture` writes it at once, so a closed pipe is not a panic).
pub fn summary_text(stats: &Stats) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = stats.summary(Window::All, 5);
    let t = &s.totals;
    let _ = writeln!(out, "\n== summary: {} exchanges", t.exchanges);
    let _ = writeln!(
        out,
        "verdicts: {}",
        t.verdicts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !t.skip_reasons.is_empty() {
        let _ = writeln!(
            out,
            "skipped:  {}",
            t.skip_reasons
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        out,
        "divergence {} of {} compared (95% CI {}–{})\n",
        pct(t.divergence.rate),
        t.divergence.samples,
        pct(Some(t.divergence.ci95[0])),
        pct(Some(t.divergence.ci95[1]))
    );
    let _ = writeln!(
        out,
        "{:<28} {:>7} {:>10} {:>17}  top fields (count, of which noise)",
        "endpoint", "samples", "divergence", "95% CI"
    );
    for e in &s.endpoints {
        let fields = e
            .stats
            .top_fields
            .iter()
            .map(|f| {
                format!(
                    "{} {} ({}, {} noise)",
                    f.field,
                    f.kind.as_str(),
                    f.count,
                    f.noise
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(
            out,
            "{:<28} {:>7} {:>10} {:>17}  {}",
            e.endpoint,
            e.stats.divergence.samples,
            pct(e.stats.divergence.rate),
            format!(
                "{}–{}",
                pct(Some(e.stats.divergence.ci95[0])),
                pct(Some(e.stats.divergence.ci95[1]))
            ),
            fields
        );
    }
    let mut sigs = stats.signatures(None);
    sigs.sort_by_key(|c| std::cmp::Reverse(c.count));
    let _ = writeln!(out, "\n== top signatures");
    for c in sigs.iter().take(6) {
        let fields = c
            .fields
            .iter()
            .map(|f| format!("{} {}", f.field, f.kind.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "{} {:>4}× {:<16} {:<26} {}",
            c.signature,
            c.count,
            c.verdict.as_str(),
            c.endpoint,
            fields
        );
    }
    out
}
