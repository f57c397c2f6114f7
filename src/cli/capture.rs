//! `shadowdiff capture`: reassembles the HTTP/1.x exchanges of one server port from a live
//! interface or a pcap/pcapng file, counts how complete the capture is, and hands every complete
//! exchange on ([`handoff`]: `--candidate` compares it with the candidate's answer, `--record`
//! writes it). Reading a file ends with the summary and the completeness counters;
//! `--summary-json` writes `/api/v1/summary`'s JSON there, with a `capture` member holding the
//! counts. With `--admin` (always for a live capture) the admin server serves the API, the UI
//! and `/metrics` with `shadowdiff_capture_*` while it runs.

mod handoff;

use super::CaptureArgs;
use crate::admin::{AdminAccess, AdminState, MetricsSource};
use crate::capture::source::{self, Input};
use crate::capture::{Counts, Finished, Limits, Outcome};
use crate::stats::{Stats, Window};
use anyhow::{Context, bail};
use handoff::Handoff;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) fn run(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => match crate::config::Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                super::print_problems(&e);
                return Ok(ExitCode::from(64));
            }
        },
        None => crate::config::Config::default(),
    };
    // Only the flags (or the config's `candidate:`) ask for comparison; the config's `primary`
    // is the proxy's upstream, which a capture never sends to: the captured answer is the
    // reference.
    if let Some(v) = args.candidate.clone() {
        cfg.candidate = Some(v);
    }
    if let Some(v) = args.secondary.clone() {
        cfg.secondary = Some(v);
    }
    cfg.primary = None;
    super::serve::init_logging(&cfg.log);
    let input = match (&args.interface, &args.pcap) {
        (Some(i), None) => Input::Interface(i.clone()),
        (None, Some(p)) => Input::File(p.clone()),
        _ => bail!("give exactly one of --interface and --pcap"),
    };
    let live = matches!(input, Input::Interface(_));
    let limits = Limits {
        max_body_bytes: cfg.shadow.max_body_bytes,
        ..Limits::default()
    };
    let shared = Arc::new(Mutex::new(Counts::default()));
    // `/readyz` answers 200 once the capture is open and filtering: traffic sent after that is
    // seen (the admin server itself comes up before).
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("shadowdiff-capture")
        .build()
        .context("cannot start the async runtime")?;
    let handle = rt.handle().clone();
    let mut handoff = {
        let _entered = rt.enter();
        Handoff::start(&args, &cfg, live)?
    };
    let (stats, noise) = handoff.stats().unwrap_or_else(|| {
        let s = Stats::new(cfg.stats.clone(), cfg.grouping.max_endpoints);
        (Arc::new(s), None)
    });

    // The admin server: asked for, or always for a live capture (its only live view).
    let admin = match (args.admin, live) {
        (Some(a), _) => Some(a),
        (None, true) => Some(cfg.admin.clone().unwrap_or_default().listen),
        (None, false) => None,
    };
    let admin_stop = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = admin {
        let mut admin_cfg = cfg.admin.clone().unwrap_or_default();
        admin_cfg.listen = addr;
        let access = AdminAccess::from_config(&admin_cfg).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("cannot bind the admin address {addr}"))?;
        let counts = shared.clone();
        let metrics = move || counts.lock().metrics();
        let mut state = AdminState::new(stats.clone(), ready.clone())
            .with_access(access)
            .with_metrics_source(Arc::new(metrics) as Arc<dyn MetricsSource>);
        state.gate = Arc::new(arc_swap::ArcSwap::from_pointee(cfg.gate.clone()));
        state.redaction = Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::redact::Redaction::from_config(&cfg.redact, cfg.publish.max_body_bytes),
        ));
        state.noise = noise;
        for m in handoff.metrics() {
            state = state.with_metrics_source(m);
        }
        let token = admin_stop.clone();
        tracing::info!(admin = %addr, "admin API, UI and /metrics");
        rt.spawn(crate::admin::serve(listener, state, async move {
            token.cancelled().await
        }));
    }
    if live {
        let stop = stop.clone();
        rt.spawn(async move {
            crate::app::shutdown_signal().await;
            stop.store(true, Ordering::Relaxed);
        });
    }

    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let counts = source::run_ready(
        &input,
        args.port,
        limits,
        &stop,
        Some(&shared),
        Some(&ready),
        |f: Finished| {
            if let (Outcome::Complete, Some(x)) = (f.outcome, f.exchange) {
                tracing::debug!(
                    connection = x.connection,
                    method = %x.request.method,
                    path = %x.request.path,
                    status = x.response.status,
                    latency_us = x.primary_latency().as_micros() as u64,
                    "exchange"
                );
                *seen
                    .entry(format!(
                        "{} {} -> {}",
                        x.request.method, x.request.path, x.response.status
                    ))
                    .or_default() += 1;
                handoff.exchange(&handle, &x);
            }
        },
    )?;
    handoff.finish(&handle, cfg.shutdown_grace);
    let mut out = counts.render();
    let mut top: Vec<_> = seen.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if !top.is_empty() {
        out.push_str("  most frequent complete exchanges:\n");
        for (k, n) in top.iter().take(10) {
            let _ = writeln!(out, "    {n:>6}  {k}");
        }
    }
    if let Some(r) = handoff.record_counters() {
        let parts: Vec<String> = r.snapshot()[..3]
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "  recording {}: {}",
            args.record
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            parts.join(", ")
        );
    }
    if handoff.compare.is_some() {
        out.push_str(&crate::demo::summary_text(&stats));
    }
    if let Some(path) = &args.summary_json {
        let mut v = serde_json::to_value(stats.summary(Window::All, 10))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("capture".into(), serde_json::to_value(&counts)?);
        }
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    admin_stop.cancel();
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the report to stdout at once. A reader that went away (`capture … | head`) is not an
/// error: the rest is not wanted (`print!` would panic on the broken pipe).
fn emit(text: &str) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write the report to stdout"),
    }
}
