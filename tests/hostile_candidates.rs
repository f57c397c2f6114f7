//! Hostile candidates against the real binary (issue 12, "Shadow answers bounded before they
//! cost anything"). A candidate whose answer never ends (chunked, or unframed until close), is
//! huge (200 MiB declared) or drips (one byte every 5 ms) must cost the live traffic nothing:
//!
//! - every client answer is the primary's, byte for byte;
//! - client latency stays within a generous ratio of a fast-candidate baseline taken in the same
//!   test, on the same process (the candidate switches from fast to hostile);
//! - the process's peak RSS stays within 64 MiB over its idle RSS;
//! - each such exchange is a `candidate_error` saying why (over `shadow.max_body_bytes`, or
//!   timed out), in `/metrics` and in the published events — or, when the memory budget is full
//!   of other answers being read, a `memory_budget` skip;
//! - the candidate sees every hostile connection end: reading stopped and the connection was
//!   closed, never pooled.
//!
//! The circuit breaker is off (`shadow.circuit.failures: 0`): it would stop shadowing after five
//! failures and hide whether each exchange is bounded on its own. The memory budget is 32 MiB:
//! with it full, RSS is the budget plus what the rest of the process takes (~12 MiB here; see
//! benches/README.md), and 32 MiB leaves the 64 MiB bound room to tell a counted budget from an
//! uncounted one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Body, eventually, free_port, get, h1_client, json_backend};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_shadowdiff");
/// What the primary (and the fast candidate) answer: ~1 KB of JSON.
const BODY: &str = r#"{"id":12345,"status":"shipped","customer":{"id":77,"name":"Ada Lovelace"},"items":[{"sku":"SKU-0000","qty":1,"price":10.99},{"sku":"SKU-0001","qty":2,"price":11.99},{"sku":"SKU-0002","qty":3,"price":12.99},{"sku":"SKU-0003","qty":4,"price":13.99},{"sku":"SKU-0004","qty":5,"price":14.99},{"sku":"SKU-0005","qty":6,"price":15.99},{"sku":"SKU-0006","qty":7,"price":16.99},{"sku":"SKU-0007","qty":8,"price":17.99}],"total":123.45,"meta":{"note":"a plain answer of about a kilobyte, as an orders API would give","pad":"................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................"}}"#;
/// The shadow deadline in these tests: short, so a slow drip ends within the time budget.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Client requests per phase, spread over `CONCURRENCY` keep-alive connections.
const REQUESTS: usize = 160;
const CONCURRENCY: usize = 8;

/// These tests time a baseline against a hostile run; running them side by side would make
/// each one's load the other's noise.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Fast,
    /// Chunked, 64 KiB chunks, never the last one.
    EndlessChunked,
    /// No framing: the body ends with the connection, so never.
    EndlessClose,
    /// `content-length: 200 MiB`, sent as fast as it is read.
    Huge,
    /// `content-length: 1 MiB`, one byte every 5 ms.
    SlowDrip,
}

/// A candidate that answers as its mode says; counts the hostile answers it began and how
/// each ended (the peer closed the connection under it, or it was all sent).
struct Candidate {
    port: u16,
    mode: Arc<AtomicU8>,
    begun: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Candidate {
    async fn start() -> Candidate {
        // A small send buffer: what the proxy does not read stays here, not in megabytes of
        // kernel buffers that this test process would copy for nothing.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener: TcpListener = socket.listen(1024).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(Mode::Fast as u8));
        let (begun, cut, finished): (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) =
            Default::default();
        let counters = (mode.clone(), begun.clone(), cut.clone(), finished.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (mode, begun, cut, finished) = counters.clone();
                tokio::spawn(async move {
                    match serve(s, &mode, &begun).await {
                        Some(true) => finished.fetch_add(1, Ordering::SeqCst),
                        Some(false) => cut.fetch_add(1, Ordering::SeqCst),
                        None => 0,
                    };
                });
            }
        });
        Candidate {
            port,
            mode,
            begun,
            cut,
            finished,
            task,
        }
    }

    fn set(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }
}

fn mode_of(v: u8) -> Mode {
    [
        Mode::Fast,
        Mode::EndlessChunked,
        Mode::EndlessClose,
        Mode::Huge,
        Mode::SlowDrip,
    ][v as usize]
}

/// Serves one connection: fast answers while the mode is fast; then one hostile answer.
/// `Some(true)` when a hostile answer was sent whole, `Some(false)` when the peer cut it
/// short, `None` when the connection ended before any hostile answer.
async fn serve(mut s: TcpStream, mode: &AtomicU8, begun: &AtomicUsize) -> Option<bool> {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        if !read_request(&mut s, &mut buf).await {
            return None;
        }
        let m = mode_of(mode.load(Ordering::SeqCst));
        if m == Mode::Fast {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                BODY.len()
            );
            if s.write_all(head.as_bytes()).await.is_err()
                || s.write_all(BODY.as_bytes()).await.is_err()
            {
                return None;
            }
            continue;
        }
        begun.fetch_add(1, Ordering::SeqCst);
        return Some(hostile(&mut s, m).await);
    }
}

/// Writes a hostile answer; true when all of it was written (it never should be).
async fn hostile(s: &mut TcpStream, m: Mode) -> bool {
    let block = vec![b'7'; 64 * 1024];
    let mut chunk = format!("{:x}\r\n", block.len()).into_bytes();
    chunk.extend_from_slice(&block);
    chunk.extend_from_slice(b"\r\n");
    let head = |framing: &str| {
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{framing}\r\n\r\n")
    };
    match m {
        Mode::Fast => true,
        Mode::EndlessChunked => {
            let mut r = s
                .write_all(head("transfer-encoding: chunked").as_bytes())
                .await;
            while r.is_ok() {
                r = s.write_all(&chunk).await;
            }
            false
        }
        Mode::EndlessClose => {
            let mut r = s.write_all(head("connection: close").as_bytes()).await;
            while r.is_ok() {
                r = s.write_all(&block).await;
            }
            false
        }
        Mode::Huge => {
            let total = 200usize << 20;
            let mut r = s
                .write_all(head(&format!("content-length: {total}")).as_bytes())
                .await;
            let mut sent = 0;
            while r.is_ok() && sent < total {
                r = s.write_all(&block).await;
                sent += block.len();
            }
            r.is_ok()
        }
        Mode::SlowDrip => {
            let total = 1usize << 20;
            let mut r = s
                .write_all(head(&format!("content-length: {total}")).as_bytes())
                .await;
            let mut sent = 0;
            while r.is_ok() && sent < total {
                tokio::time::sleep(Duration::from_millis(5)).await;
                r = s.write_all(b"7").await;
                sent += 1;
            }
            r.is_ok()
        }
    }
}

/// Reads one request (head and `content-length` body); false when the peer is gone.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return true;
            }
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `shadowdiff proxy` as a child process; killed and reaped however the test ends.
struct Sidecar {
    child: Child,
    listen: u16,
    admin: u16,
    dir: tempfile::TempDir,
    log: Arc<parking_lot::Mutex<String>>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    async fn start(primary: u16, candidate: u16) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = (free_port(), free_port());
        let cfg = dir.path().join("shadowdiff.yaml");
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{listen}\nprimary: http://127.0.0.1:{primary}\n\
                 candidate: http://127.0.0.1:{candidate}\nadmin: 127.0.0.1:{admin}\n\
                 sinks: {{file: {{path: {}}}}}\nlog: {{level: warn}}\n\
                 shadow: {{timeout: {}s, max_buffered_bytes: 32MiB, circuit: {{failures: 0}}}}\n",
                dir.path().join("events.jsonl").display(),
                TIMEOUT.as_secs()
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .args(["proxy", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(parking_lot::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().push_str(&(line + "\n"));
            }
        });
        let s = Sidecar {
            child,
            listen,
            admin,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", listen)).await.is_err()
            || TcpStream::connect(("127.0.0.1", admin)).await.is_err()
        {
            assert!(
                Instant::now() < deadline,
                "shadowdiff not listening within 30 s:\n{}",
                s.log.lock()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s
    }

    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// Exchanges by verdict and skips by reason, from `/metrics`.
    async fn counts(&self, client: &Client<HttpConnector, Body>) -> Counts {
        let (_, text) = get(client, &format!("http://127.0.0.1:{}/metrics", self.admin)).await;
        let mut c = Counts::default();
        for l in String::from_utf8_lossy(&text).lines() {
            let label = |name: &str| {
                let at = l.find(&format!("{name}=\""))? + name.len() + 2;
                Some(l[at..].split('"').next()?.to_string())
            };
            let n = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            let key = if l.starts_with("shadowdiff_exchanges_total{") {
                label("verdict").filter(|v| v != "skipped")
            } else if l.starts_with("shadowdiff_shadow_skipped_total{") {
                label("reason")
            } else {
                None
            };
            if let (Some(k), Some(n)) = (key, n) {
                *c.0.entry(k).or_default() += n as usize;
            }
        }
        c
    }

    /// The `candidate.error` of every published event.
    fn candidate_errors(&self) -> Vec<String> {
        events(&self.dir.path().join("events.jsonl"))
            .iter()
            .filter_map(|e| e["candidate"]["error"].as_str().map(str::to_string))
            .collect()
    }
}

/// Verdicts (but `skipped`) and skip reasons, with their counts.
#[derive(Debug, Default)]
struct Counts(std::collections::BTreeMap<String, usize>);

impl Counts {
    fn get(&self, k: &str) -> usize {
        self.0.get(k).copied().unwrap_or(0)
    }

    fn compared(&self) -> usize {
        ["match", "mismatch", "noise"]
            .iter()
            .map(|k| self.get(k))
            .sum()
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `REQUESTS` GETs over `CONCURRENCY` connections; every answer must be the primary's. The
/// latencies, sorted.
async fn load(client: &Client<HttpConnector, Body>, port: u16, phase: &str) -> Vec<Duration> {
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let client = client.clone();
            let phase = phase.to_string();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..REQUESTS / CONCURRENCY {
                    let url = format!("http://127.0.0.1:{port}/orders/{t}{i}");
                    let t0 = Instant::now();
                    let (parts, body) = get(&client, &url).await;
                    lat.push(t0.elapsed());
                    assert_eq!(parts.status, 200, "{phase}: {url}");
                    assert!(
                        body == Bytes::from_static(BODY.as_bytes()),
                        "{phase}: {url} answered {} bytes that are not the primary's",
                        body.len()
                    );
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The whole scenario for one hostile mode; `reason` is what each exchange's error must say.
async fn hostile_candidate(m: Mode, reason: &str) {
    let _serial = SERIAL.lock().await;
    let primary = json_backend(BODY).await;
    let candidate = Candidate::start().await;
    let sidecar = Sidecar::start(primary.addr.port(), candidate.port).await;
    let client = h1_client();
    let idle_kib = sidecar.status("VmRSS:");

    // Baseline: a fast candidate, every exchange compared.
    let fast = load(&client, sidecar.listen, "fast").await;
    // Its shadows all done before the candidate turns.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sidecar.counts(&client).await.compared() < REQUESTS {
        assert!(Instant::now() < deadline, "fast exchanges not compared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    candidate.set(m);
    let before = candidate.begun.load(Ordering::SeqCst);
    let hostile = load(&client, sidecar.listen, "hostile").await;
    // Every exchange accounted for (the hostile ones end within the shadow deadline; the
    // margin is for a loaded machine).
    let deadline = Instant::now() + 5 * TIMEOUT;
    let counts = loop {
        let c = sidecar.counts(&client).await;
        if c.total() >= 2 * REQUESTS || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(counts.total(), 2 * REQUESTS, "{m:?}: {counts:?}");
    assert_eq!(
        counts.compared(),
        REQUESTS,
        "{m:?}: only the fast ones compared: {counts:?}"
    );
    // Each hostile exchange is a candidate error; or, when the memory budget (shared with every
    // other shadow and copy) or the I/O threads were full, a counted skip that says so.
    let errors = counts.get("candidate_error");
    let skipped = counts.get("memory_budget") + counts.get("overload");
    assert_eq!(errors + skipped, REQUESTS, "{m:?}: {counts:?}");
    assert!(errors > 0, "{m:?}: no candidate error: {counts:?}");
    eventually("the events to be written", || {
        sidecar.candidate_errors().len() >= errors
    })
    .await;
    let said = sidecar.candidate_errors();
    assert!(
        said.iter().all(|e| e.contains(reason)),
        "{m:?}: errors {said:?} should all say {reason:?}"
    );
    // Every hostile answer that began was cut off by the proxy: reading stopped and the
    // connection was closed.
    let begun = candidate.begun.load(Ordering::SeqCst) - before;
    assert!(
        begun >= errors,
        "{m:?}: {begun} hostile answers, {errors} errors"
    );
    eventually("every hostile answer to be cut off", || {
        candidate.cut.load(Ordering::SeqCst) == candidate.begun.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(candidate.finished.load(Ordering::SeqCst), 0, "{m:?}");

    // Memory: peak RSS over the idle process.
    let peak_kib = sidecar.status("VmHWM:");
    let over = peak_kib.saturating_sub(idle_kib);
    // Latency: the hostile run against the fast one, same process, same test.
    let (f50, f90, h50, h90) = (
        pct(&fast, 0.5),
        pct(&fast, 0.9),
        pct(&hostile, 0.5),
        pct(&hostile, 0.9),
    );
    eprintln!(
        "{m:?}: client p50 {h50:?} (fast {f50:?}), p90 {h90:?} (fast {f90:?}); RSS idle {idle_kib} KiB, \
         peak {peak_kib} KiB (+{} MiB); {begun} hostile answers cut off, {counts:?}",
        over / 1024
    );
    assert!(over <= 64 * 1024, "{m:?}: RSS grew {over} KiB over idle");
    // Generous for a loaded 2-core machine: with shadow I/O on the forwarding threads, an
    // endless chunked candidate made p50 5–7× the fast run's here; on its own thread, ≤ 1.7×.
    assert!(
        h50 <= f50 * 3 && h90 <= f90 * 4,
        "{m:?}: client latency p50 {h50:?} / p90 {h90:?} against the fast run's {f50:?} / {f90:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_answer_is_cut_at_the_cap() {
    hostile_candidate(Mode::EndlessChunked, "answer body over 4194304 bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_close_delimited_answer_is_cut_at_the_cap() {
    hostile_candidate(Mode::EndlessClose, "answer body over 4194304 bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_refused_by_its_declared_length() {
    hostile_candidate(Mode::Huge, "answer body over 4194304 bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_is_cut_at_the_deadline() {
    hostile_candidate(Mode::SlowDrip, "timed out after 2s").await;
}

/// The same rules in process, where the verdicts can be read one by one: an answer over the
/// cap is the candidate's failure (the circuit counts it) when the primary's fits, a
/// `body_too_large` skip when the primary's is over the cap too (never the candidate's fault);
/// a secondary over the cap is a failed secondary (no noise measured, the verdict stands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_is_a_candidate_error_that_opens_the_circuit_unless_the_primary_is_too() {
    use common::{TestSink, backend, config, full, start};
    use shadowdiff::compare::{SkipReason, VerdictKind};
    use shadowdiff::ingest::circuit::CircuitState;
    let _serial = SERIAL.lock().await;
    let big = || full(vec![b'7'; 2048]);
    let primary = backend(move |r| async move {
        let body = if r.uri.starts_with("/both") {
            big()
        } else {
            common::full(BODY)
        };
        http::Response::builder()
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    })
    .await;
    let candidate =
        backend(move |_| async move { http::Response::builder().body(big()).unwrap() }).await;
    let secondary = json_backend(BODY).await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.max_body_bytes = 1024;
    cfg.shadow.circuit.failures = 3;
    cfg.shadow.circuit.cooldown = Duration::from_secs(60);
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    // Both over the cap: skipped, and the circuit hears nothing of it.
    for i in 0..4 {
        get(&client, &proxy.url(&format!("/both/{i}"))).await;
    }
    sink.wait_for(4).await;
    assert_eq!(sink.count_skip(SkipReason::BodyTooLarge), 4);
    assert_eq!(proxy.handle.circuit().state(), CircuitState::Closed);
    // Only the candidate's over: three candidate errors open the circuit.
    for i in 0..4 {
        get(&client, &proxy.url(&format!("/one/{i}"))).await;
        sink.wait_for(5 + i).await;
    }
    let seen = sink.seen();
    assert_eq!(sink.count_kind(VerdictKind::CandidateError), 3, "{seen:#?}");
    assert!(
        seen.iter()
            .filter(|s| s.kind == VerdictKind::CandidateError)
            .all(|s| s
                .notes
                .iter()
                .any(|n| n.contains("answer body over 1024 bytes"))),
        "{seen:#?}"
    );
    assert_eq!(sink.count_skip(SkipReason::CircuitOpen), 1);
    assert_eq!(proxy.handle.circuit().state(), CircuitState::Open);
    proxy.shutdown().await;

    // A secondary over the cap explains nothing: the candidate's answer is judged alone.
    let sink = TestSink::new();
    let mut cfg = config(&primary, secondary.upstream());
    cfg.secondary = Some(candidate.upstream());
    cfg.shadow.max_body_bytes = 1024;
    let proxy = start(cfg, sink.clone()).await;
    get(&client, &proxy.url("/one/x")).await;
    let seen = sink.wait_for(1).await;
    assert_eq!(seen[0].kind, VerdictKind::Match, "{seen:#?}");
    proxy.shutdown().await;
}
