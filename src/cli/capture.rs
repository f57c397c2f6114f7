//! `shadowdiff capture`: reassembles the HTTP/1.x exchanges of one server port from a live
//! interface or a pcap/pcapng file, counts how complete the capture is, and hands every complete
//! exchange on. Reading a file ends with the summary and the completeness counters;
//! `--summary-json` writes `/api/v1/summary`'s JSON there, with a `capture` member holding the
//! counts. With `--admin` (always for a live capture) the admin server serves `/metrics` with
//! `shadowdiff_capture_*` while it runs.

use super::CaptureArgs;
use crate::admin::{AdminAccess, AdminState, MetricsSource};
use crate::capture::source::{self, Input};
use crate::capture::{CapturedExchange, Counts, Finished, Limits, Outcome};
use crate::stats::{Stats, Window};
use anyhow::{Context, bail};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where captured exchanges go besides the counters.
pub trait Handoff: Send {
    fn exchange(&mut self, x: CapturedExchange);
    /// The capture ended: flush, wait for what is in flight.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The seam to the replay engine and the recorder (issue 13, items 4 and 5): `--candidate`
/// sends each captured request to the candidate (and secondary) under the proxy's shadow policy
/// and compares with the captured primary answer; `--record` writes `shadowdiff.recording.v1`.
/// Both live with `shadowdiff replay`'s source, which converts a [`CapturedExchange`]; until it
/// is merged, asking for either is refused up front rather than silently ignored.
pub fn replay_handoff(args: &CaptureArgs) -> anyhow::Result<Option<Box<dyn Handoff>>> {
    if args.candidate.is_none() && args.secondary.is_none() && args.record.is_none() {
        return Ok(None);
    }
    bail!(
        "--candidate, --secondary and --record need the replay engine, which is not in this build \
         yet; run `shadowdiff capture` without them to reassemble and count the exchanges"
    )
}

pub(super) fn run(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    let cfg = match &args.config {
        Some(p) => match crate::config::Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                super::print_problems(&e);
                return Ok(ExitCode::from(64));
            }
        },
        None => crate::config::Config::default(),
    };
    super::serve::init_logging(&cfg.log);
    let mut handoff = replay_handoff(&args)?;
    let input = match (&args.interface, &args.pcap) {
        (Some(i), None) => Input::Interface(i.clone()),
        (None, Some(p)) => Input::File(p.clone()),
        _ => bail!("give exactly one of --interface and --pcap"),
    };
    let limits = Limits {
        max_body_bytes: cfg.shadow.max_body_bytes,
        ..Limits::default()
    };
    let stats = Arc::new(Stats::new(cfg.stats.clone(), cfg.grouping.max_endpoints));
    let shared = Arc::new(Mutex::new(Counts::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("shadowdiff-capture")
        .build()
        .context("cannot start the async runtime")?;

    // The admin server: asked for, or always for a live capture (its only live view).
    let admin = match (args.admin, &input) {
        (Some(a), _) => Some(a),
        (None, Input::Interface(_)) => Some(cfg.admin.clone().unwrap_or_default().listen),
        (None, Input::File(_)) => None,
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
        let state = AdminState::new(stats.clone(), Arc::new(AtomicBool::new(true)))
            .with_access(access)
            .with_metrics_source(Arc::new(metrics) as Arc<dyn MetricsSource>);
        let token = admin_stop.clone();
        tracing::info!(admin = %addr, "admin API and /metrics");
        rt.spawn(crate::admin::serve(listener, state, async move {
            token.cancelled().await
        }));
    }
    if matches!(input, Input::Interface(_)) {
        let stop = stop.clone();
        rt.spawn(async move {
            crate::app::shutdown_signal().await;
            stop.store(true, Ordering::Relaxed);
        });
    }

    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let counts = source::run(
        &input,
        args.port,
        limits,
        &stop,
        Some(&shared),
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
                if let Some(h) = handoff.as_mut() {
                    h.exchange(x);
                }
            }
        },
    )?;
    if let Some(h) = handoff.as_mut() {
        h.finish()?;
    }
    print!("{}", counts.render());
    let mut top: Vec<_> = seen.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if !top.is_empty() {
        println!("  most frequent complete exchanges:");
        for (k, n) in top.iter().take(10) {
            println!("    {n:>6}  {k}");
        }
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
    Ok(ExitCode::SUCCESS)
}
