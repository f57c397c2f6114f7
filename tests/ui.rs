//! The review UI in a real browser: `shadowdiff demo` serves it, headless Chromium (Debian's,
//! driven by playwright-core) reviews the mismatch feed the way QA does, and every figure it reads
//! on the page is checked against the JSON API. The browser side is `tests/ui/review.mjs`.
//!
//! Another checks the charts against `/api/v1/charts` (`tests/ui/charts.mjs`).
//!
//! A second test puts the admin API behind a bearer token (`admin.token_file`) in front of
//! `shadowdiff proxy` and opens the page as `/#token=...`: `tests/ui/token.mjs` checks that the
//! data loads, every API request carries the token, and the token leaves the address bar.
//!
//! Another acknowledges a cluster in the page (`tests/ui/triage.mjs`, issue 16's triage).
//!
//! A third feeds `shadowdiff proxy` the planted personal data of `tests/pii/` and opens every
//! event in the detail view (`tests/ui/pii.mjs`): nothing Chromium rendered may hold a secret.
//!
//! Needs `/usr/bin/chromium`, `node` and `target/ui-test/node_modules` (all installed by
//! `scripts/install-test-deps.sh`). Without them the test says why and passes, unless
//! `SHADOWDIFF_REQUIRE_BROWSER=1` (set by `scripts/test.sh`), where a missing piece is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod pii;

use crossbeam_channel as mpsc;
use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Kills and reaps the child however the test ends (a failed assertion included), so no demo or
/// browser outlives it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the browser test needs, or the first thing missing.
fn prerequisites() -> Result<PathBuf, String> {
    if !Path::new(CHROMIUM).exists() {
        return Err(format!("{CHROMIUM} not found (Debian package chromium)"));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("node not found".into()),
    }
    let modules = manifest_dir().join("target/ui-test/node_modules");
    if !modules.join("playwright-core/package.json").exists() {
        return Err(format!("{} has no playwright-core", modules.display()));
    }
    Ok(modules)
}

/// A port that was free a moment ago. The demo falls back to another free port if it is taken in
/// between, and the test reads the address the demo actually bound from its output anyway.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A blocking `GET` on loopback, returning status and body (the admin server closes after a
/// `Connection: close` request, so reading to the end is the whole answer).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_get_with(addr, path, "")
}

/// [`http_get`] with extra header lines (each ending in `\r\n`).
fn http_get_with(addr: SocketAddr, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)));
    }
    Ok((status, body.to_string()))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Waits for `child` with a deadline; kills it when the deadline passes.
fn wait_with_deadline(child: &mut KillOnDrop, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `tests/ui/SCRIPT` in node against the admin server at `admin`, with the browser's
/// settings and `env`; fails when it fails or takes over 180 s (its output goes to the test's).
/// One browser at a time: three Chromiums at once on a 2-core machine starve each other and the
/// sidecars they read (the page-width check failed now and then under that load).
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn browse(script: &str, modules: &Path, admin: SocketAddr, env: &[(&str, &std::ffi::OsStr)]) {
    let _one = ONE_BROWSER.lock();
    let mut node = KillOnDrop(
        Command::new("node")
            .arg(manifest_dir().join("tests/ui").join(script))
            .env("ADMIN_URL", format!("http://{admin}"))
            .env("PLAYWRIGHT_MODULES", modules)
            .env("CHROMIUM", CHROMIUM)
            .envs(env.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    match wait_with_deadline(&mut node, Duration::from_secs(180)) {
        Some(s) => assert!(
            s.success(),
            "tests/ui/{script} failed ({s}); its output is above"
        ),
        None => panic!("tests/ui/{script} did not finish in 180s"),
    }
}

/// The playwright-core modules, or `None` (after saying why) when the browser test is skipped.
fn modules_or_skip() -> Option<PathBuf> {
    match prerequisites() {
        Ok(m) => Some(m),
        Err(why) if std::env::var_os("SHADOWDIFF_REQUIRE_BROWSER").is_some() => {
            panic!("browser test required but {why}: run scripts/install-test-deps.sh")
        }
        Err(why) => {
            eprintln!(
                "skipping the review UI browser test: {why} (scripts/install-test-deps.sh installs it)"
            );
            None
        }
    }
}

/// `shadowdiff demo` on a free admin port, once every recorded request has been observed (from
/// then on the figures are final): the process, its admin address and the exchanges it drove.
fn demo() -> (KillOnDrop, SocketAddr, u64) {
    let root = manifest_dir();
    // How many exchanges the demo drives: its recorded traffic, one request a line.
    let traffic = std::fs::read_to_string(root.join("sample-traffic/demo.jsonl")).unwrap();
    let expected = traffic.lines().filter(|l| !l.trim().is_empty()).count() as u64;

    let port = free_port();
    let mut demo = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args(["demo", "--admin", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The demo names its admin address on stderr; keep draining stderr (the progress bar writes
    // there) and keep a copy for failure messages.
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = mpsc::unbounded::<SocketAddr>();
    {
        let stderr = demo.0.stderr.take().unwrap();
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("admin") {
                    let url = rest.split_whitespace().next().unwrap_or("");
                    let host = url.trim_start_matches("http://").trim_end_matches('/');
                    if let Ok(a) = host.parse() {
                        let _ = addr_tx.send(a);
                    }
                }
                log.lock().push_str(&line);
                log.lock().push('\n');
            }
        });
    }
    let started = Instant::now();
    let admin = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the demo never named its admin address:\n{}", log.lock()));

    // Ready when every recorded request has been observed: from then on the figures are final.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            panic!("the demo exited ({status}):\n{}", log.lock());
        }
        if let Ok((200, body)) = http_get(admin, "/api/v1/summary?window=all&top=1") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["totals"]["exchanges"].as_u64() == Some(expected) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not observe {expected} exchanges in time:\n{}",
            log.lock()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("demo ready in {:?} at http://{admin}/", started.elapsed());

    (demo, admin, expected)
}

/// `target/ui-test/NAME`, its folder made and an older screenshot removed.
fn fresh_screenshot(name: &str) -> PathBuf {
    let out_dir = manifest_dir().join("target/ui-test");
    std::fs::create_dir_all(&out_dir).unwrap();
    let p = out_dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn a_reviewer_finds_the_planted_regression_in_the_browser() {
    let Some(modules) = modules_or_skip() else {
        return;
    };
    let screenshot = fresh_screenshot("review.png");
    let (_demo, admin, expected) = demo();

    let browsing = Instant::now();
    browse(
        "review.mjs",
        &modules,
        admin,
        &[
            ("SCREENSHOT", screenshot.as_os_str()),
            ("EXPECTED_EXCHANGES", expected.to_string().as_ref()),
        ],
    );
    eprintln!("browser review took {:?}", browsing.elapsed());
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
}

/// The charts (issue 14): every drawn mark against `/api/v1/charts` (`tests/ui/charts.mjs`);
/// the screenshot is `target/ui-test/charts.png`.
#[test]
fn the_charts_draw_what_the_api_says() {
    let Some(modules) = modules_or_skip() else {
        return;
    };
    let charts = fresh_screenshot("charts.png");
    let (_demo, admin, _) = demo();
    browse(
        "charts.mjs",
        &modules,
        admin,
        &[("SCREENSHOT", charts.as_os_str())],
    );
    assert!(charts.exists(), "no screenshot at {}", charts.display());
}

/// A tiny HTTP/1.1 server on 127.0.0.1: every request gets `body` as JSON, then the connection
/// closes. Its threads end with the test process.
fn json_server(body: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// `shadowdiff proxy` with its admin API behind `TOKEN` (`admin.token_file`) in front of JSON
/// backends whose candidate differs in `/total`, after `EXCHANGES` GETs have all been counted.
/// The sidecar, its admin address and its log (stderr); `dir` holds the config and the files.
fn token_sidecar(dir: &Path) -> (KillOnDrop, SocketAddr, Arc<Mutex<String>>) {
    let primary = json_server(r#"{"id":1,"total":9.99,"tags":["a","b"]}"#);
    let secondary = json_server(r#"{"id":1,"total":9.99,"tags":["a","b"]}"#);
    let candidate = json_server(r#"{"id":1,"total":10.99,"tags":["a","b"]}"#);
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = dir.join("shadowdiff.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: {listen}\nprimary: http://{primary}\ncandidate: http://{candidate}\n\
             secondary: http://{secondary}\nsinks:\n  file: {{path: {}}}\n\
             admin:\n  listen: {admin}\n  token_file: {}\n",
            dir.join("events.jsonl").display(),
            token_file.display()
        ),
    )
    .unwrap();
    let mut sidecar = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args(["proxy", "--config", cfg.to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    {
        let stderr = sidecar.0.stderr.take().unwrap();
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().push_str(&line);
                log.lock().push('\n');
            }
        });
    }
    // Ready when /healthz answers (no token needed there).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http_get(admin, "/healthz"), Ok((200, _))) {
        if let Some(status) = sidecar.0.try_wait().unwrap() {
            panic!("the sidecar exited ({status}):\n{}", log.lock());
        }
        assert!(
            Instant::now() < deadline,
            "no /healthz in time:\n{}",
            log.lock()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(
        http_get(admin, "/api/v1/summary").unwrap().0,
        401,
        "the API must want the token"
    );
    for i in 0..EXCHANGES {
        let mut s = TcpStream::connect(listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /orders/{i} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Every exchange compared: from then on the figures are final.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, body)) = http_get_with(admin, "/api/v1/summary?window=all&top=1", &auth) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["totals"]["exchanges"].as_u64() == Some(EXCHANGES) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not count {EXCHANGES} exchanges:\n{}",
            log.lock()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    (sidecar, admin, log)
}

const TOKEN: &str = "ui-token+with/base64=chars-0123456789";
const EXCHANGES: u64 = 6;

#[test]
fn the_ui_takes_its_token_from_the_fragment_and_forgets_the_url() {
    let Some(modules) = modules_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_sidecar, admin, log) = token_sidecar(dir.path());
    browse(
        "token.mjs",
        &modules,
        admin,
        &[
            ("ADMIN_TOKEN", TOKEN.as_ref()),
            ("EXPECTED_EXCHANGES", EXCHANGES.to_string().as_ref()),
        ],
    );
    assert!(
        !log.lock().contains(TOKEN),
        "the token reached the log:\n{}",
        log.lock()
    );
}

/// Triage in the browser (issue 16): QA picks the cluster, acknowledges it with who and why
/// (the page sends the token), and the page shows it as expected, with the suggested rule and
/// its pre-check and a field tree that filters the feed; `tests/ui/triage.mjs` checks each
/// against the API. Then the acknowledgement is in the file beside the event file.
#[test]
fn a_reviewer_acknowledges_a_cluster_and_gets_its_rule_in_the_browser() {
    let Some(modules) = modules_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_sidecar, admin, _log) = token_sidecar(dir.path());
    browse(
        "triage.mjs",
        &modules,
        admin,
        &[
            ("ADMIN_TOKEN", TOKEN.as_ref()),
            ("EXPECTED_EXCHANGES", EXCHANGES.to_string().as_ref()),
        ],
    );
    let kept = std::fs::read_to_string(dir.path().join("shadowdiff-acknowledgements.json"))
        .expect("the acknowledgement is kept beside the event file");
    assert!(kept.contains("price change agreed"), "{kept}");
}

#[test]
fn the_detail_view_of_every_planted_mismatch_shows_no_secret() {
    let Some(modules) = modules_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  file: {{path: {}}}\n",
        dir.path().join("events.jsonl").display()
    );
    let proxy = pii::RealProxy::start(dir.path(), &sinks, false, &[]);
    let admin = proxy.admin;
    proxy.drive_and_wait();

    let out = dir.path().join("rendered.txt");
    browse("pii.mjs", &modules, admin, &[("OUT", out.as_os_str())]);
    let rendered = std::fs::read(&out).unwrap();
    pii::assert_no_secret("the review UI as Chromium rendered it", &rendered);
    // Not vacuous: every event was rendered, with its redacted differences.
    let text = String::from_utf8_lossy(&rendered);
    assert_eq!(
        text.matches("[[shadowdiff-detail-view ").count() as u64,
        pii::exchanges(),
        "one detail view per event"
    );
    for shown in [
        "/by_email/<redacted:email>/visits",
        "GET /users/<redacted:email>/cards/{id}",
        "/vault/<redacted>",
        "code=<redacted>",
    ] {
        assert!(text.contains(shown), "{shown} not rendered");
    }
}
