//! `shadowdiff replay --traffic FILE`: recorded requests sent to live targets, compared with the
//! recorded answers (or, with `--primary`, with a live primary's: a double run), through the
//! one wiring ([`crate::app::Recorded`]). A progress bar while it runs (on a terminal), the
//! summary at the end, `--summary-json`, and with `--max-divergence` the gate's exit code over
//! what was replayed.

use super::{ReplayArgs, print_problems};
use crate::app::{AppError, Recorded, Settings};
use crate::ingest::recorded::{Handled, RecordedPair};
use crate::record::reader::Reader;
use crate::stats::Window;
use anyhow::{Context, bail};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What kind of file `--traffic` names, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Traffic {
    Recording,
    Pcap,
}

fn sniff(path: &Path) -> anyhow::Result<Traffic> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot read --traffic {}", path.display()))?;
    let n = f.read(&mut head)?;
    const PCAP: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a], // pcapng section header
    ];
    Ok(if n == 4 && PCAP.contains(&head) {
        Traffic::Pcap
    } else {
        Traffic::Recording
    })
}

/// How the replay went, beyond the statistics.
#[derive(Debug, Default)]
struct Tally {
    read: AtomicU64,
    invalid: AtomicU64,
    compared: AtomicU64,
    skipped: AtomicU64,
    lost: AtomicU64,
    /// The completeness counts of a pcap/pcapng input, once it is read.
    capture: parking_lot::Mutex<Option<crate::capture::Counts>>,
}

pub(super) fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match super::serve::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(v) = args.candidate.clone() {
        cfg.candidate = Some(v);
    }
    if let Some(v) = args.secondary.clone() {
        cfg.secondary = Some(v);
    }
    // Only `--primary` makes a double run: a config file's `primary` is the proxy's production
    // upstream, which a replay must not send to unasked.
    cfg.primary = args.primary.clone();
    super::serve::init_logging(&cfg.log);
    let pcap = sniff(&args.traffic)? == Traffic::Pcap;
    if pcap && args.port.is_none() {
        bail!(
            "{}: a pcap/pcapng file needs --port N (the server port of its exchanges)",
            args.traffic.display()
        );
    }
    let mut args = args;
    if !pcap && args.port.take().is_some() {
        tracing::warn!("--port applies to pcap input only; ignored for a recording");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second");
    }
    let max_divergence = args
        .max_divergence
        .as_deref()
        .map(crate::units::parse_rate)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--max-divergence: {e}"))?;
    let gate_cfg = cfg.gate.clone();
    let settings = match Settings::load(cfg) {
        Ok(s) => s,
        Err(e) => {
            print_problems(&e);
            return Ok(ExitCode::from(64));
        }
    };
    // A capture's exchange count is known only once it is reassembled: the bar counts up.
    let total = if pcap { 0 } else { count_lines(&args.traffic)? };
    let live_primary = args.primary.is_some();
    let rt = super::serve::runtime("shadowdiff-replay")?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let stats = match rt.block_on(replay(settings, &args, live_primary, total, tally.clone())) {
        Ok(s) => s,
        Err(AppError::Config(e)) => {
            print_problems(&e);
            return Ok(ExitCode::from(64));
        }
        Err(e) => return Err(e.into()),
    };
    let elapsed = started.elapsed();
    if let Some(c) = tally.capture.lock().take() {
        print!("{}", c.render());
    }
    println!(
        "== replay of {}: {} exchanges read in {:.1}s ({} compared, {} skipped, {} lost, {} invalid lines){}",
        args.traffic.display(),
        tally.read.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        tally.compared.load(Ordering::Relaxed),
        tally.skipped.load(Ordering::Relaxed),
        tally.lost.load(Ordering::Relaxed),
        tally.invalid.load(Ordering::Relaxed),
        if live_primary {
            " — double run: primary sent live"
        } else {
            " — against the recorded primary answers"
        }
    );
    crate::demo::print_summary(&stats);
    if let Some(p) = &args.summary_json {
        let s = stats.summary(Window::All, 10);
        let text = serde_json::to_string_pretty(&s)?;
        std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let Some(max) = max_divergence else {
        return Ok(ExitCode::SUCCESS);
    };
    let report = stats.gate(
        Window::All,
        &gate_cfg.params(crate::stats::GateAsk {
            max_divergence: Some(max),
            min_samples: args.min_samples,
            ..Default::default()
        }),
    );
    println!();
    print!("{}", super::render_gate(&report));
    Ok(ExitCode::from(report.verdict.exit_code()))
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut f = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let mut buf = [0u8; 64 << 10];
    let mut n = 0u64;
    let mut last = b'\n';
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += buf[..k].iter().filter(|b| **b == b'\n').count() as u64;
        last = buf[k - 1];
    }
    Ok(n + u64::from(last != b'\n'))
}

async fn replay(
    settings: Settings,
    args: &ReplayArgs,
    live_primary: bool,
    total: u64,
    tally: Arc<Tally>,
) -> Result<Arc<crate::stats::Stats>, AppError> {
    let app = Recorded::start(settings, "replay", live_primary)?;
    let bar = progress(total);
    // The file is read on a thread of its own (libpcap and the recording reader block) into a
    // bounded queue: reading never runs ahead of the replay by more than its capacity.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordedPair>(256);
    let reading = {
        let (path, port, tally, bar) =
            (args.traffic.clone(), args.port, tally.clone(), bar.clone());
        tokio::task::spawn_blocking(move || match port {
            Some(port) => read_capture(&path, port, &tally, &tx),
            None => read_recording(&path, &tally, &bar, &tx),
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    let concurrency = args.concurrency.max(1);
    // `--rate`: one request every 1/rate seconds on a fixed schedule, so a slow moment is caught
    // up afterwards (never more than `--concurrency` at once).
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next = tokio::time::Instant::now();
    while let Some(pair) = rx.recv().await {
        tally.read.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = interval {
            tokio::time::sleep_until(next).await;
            next += i;
        }
        while tasks.len() >= concurrency {
            let _ = tasks.join_next().await;
        }
        let (shadows, tally, bar) = (app.shadows().clone(), tally.clone(), bar.clone());
        tasks.spawn(async move {
            let c = match shadows.shadow(pair).await {
                Handled::Compared => &tally.compared,
                Handled::Skipped(_) => &tally.skipped,
                Handled::Lost => &tally.lost,
            };
            c.fetch_add(1, Ordering::Relaxed);
            bar.inc(1);
        });
    }
    while tasks.join_next().await.is_some() {}
    if let Ok(Err(e)) = reading.await {
        tracing::error!(error = %e, "cannot read the traffic");
    }
    bar.finish_and_clear();
    Ok(app.finish().await)
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (CI logs stay clean).
fn progress(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("replay [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("#> "));
    }
    let _ = std::io::stderr().flush();
    bar
}

/// Sends each usable recording of `path` on `tx`; unusable lines are counted and logged.
fn read_recording(
    path: &Path,
    tally: &Tally,
    bar: &indicatif::ProgressBar,
    tx: &tokio::sync::mpsc::Sender<RecordedPair>,
) -> anyhow::Result<()> {
    let reader = Reader::open(path).context("cannot read the recording")?;
    for line in reader {
        let rec = match line {
            Ok(r) => r,
            Err(e) => {
                tally.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(line = e.line, reason = %e.reason, "skipping a line that is not a recording");
                bar.inc(1);
                continue;
            }
        };
        let (request, primary) = match rec.to_exchange_parts() {
            Ok(p) => p,
            Err(e) => {
                tally.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(id = %rec.id, reason = %e, "skipping an unusable recording");
                bar.inc(1);
                continue;
            }
        };
        let pair = RecordedPair {
            ts: rec.time(),
            request,
            primary,
        };
        if tx.blocking_send(pair).is_err() {
            break;
        }
    }
    Ok(())
}

/// Reassembles the exchanges of server port `port` from a pcap/pcapng file (as `shadowdiff
/// capture --pcap` does) and sends each complete one on `tx`; the completeness counts are kept
/// in `tally` for the report.
fn read_capture(
    path: &Path,
    port: u16,
    tally: &Tally,
    tx: &tokio::sync::mpsc::Sender<RecordedPair>,
) -> anyhow::Result<()> {
    use crate::capture::source::{self, Input};
    use crate::capture::{Limits, Outcome};
    let stop = std::sync::atomic::AtomicBool::new(false);
    let input = Input::File(path.to_path_buf());
    let counts = source::run(&input, port, Limits::default(), &stop, None, |f| {
        if let (Outcome::Complete, Some(x)) = (f.outcome, f.exchange) {
            let pair = RecordedPair {
                ts: x.ts(),
                request: x.to_request(),
                primary: x.to_primary(),
            };
            if tx.blocking_send(pair).is_err() {
                stop.store(true, Ordering::Relaxed);
            }
        }
    })?;
    *tally.capture.lock() = Some(counts);
    Ok(())
}
