//! Helpers for the integration tests: real backends on 127.0.0.1 port 0 that record what they
//! receive, a counting sink that tests can wait on, HTTP/1.1 and h2c clients, and finding the
//! real components `scripts/install-test-deps.sh` installs (skip without them, fail under `CI`);
//! [`process`] runs the real binary as a child.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod process;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use shadowdiff::app::{self, Proxy};
use shadowdiff::compare::{SkipReason, VerdictKind};
use shadowdiff::config::{ProxyConfig, Upstream};
use shadowdiff::pipeline::{Observation, Sink};
use shadowdiff::stats::noise::NoiseModel;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// A request as a backend received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

type Handler =
    Arc<dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// A real HTTP server (HTTP/1.1 and h2c) recording every request it receives.
pub struct Backend {
    pub addr: SocketAddr,
    pub received: tokio::sync::Mutex<mpsc::UnboundedReceiver<Recorded>>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub fn upstream(&self) -> Upstream {
        Upstream::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The next recorded request (waits up to 10 s).
    pub async fn next(&self) -> Recorded {
        tokio::time::timeout(Duration::from_secs(10), self.received.lock().await.recv())
            .await
            .expect("backend received nothing within 10 s")
            .expect("backend gone")
    }
}

pub async fn backend<F, Fut>(f: F) -> Backend
where
    F: Fn(Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |r| Box::pin(f(r)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let (handler, tx) = (handler.clone(), tx.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (handler, tx) = (handler.clone(), tx.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let rec = Recorded {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        };
                        let _ = tx.send(rec.clone());
                        Ok::<_, Infallible>(handler(rec).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        received: tokio::sync::Mutex::new(rx),
        accepted,
        task,
    }
}

/// A backend answering every request with `200` and `body` as JSON.
pub async fn json_backend(body: &'static str) -> Backend {
    backend(move |_| async move {
        Response::builder()
            .header("content-type", "application/json")
            .body(full(body))
            .unwrap()
    })
    .await
}

/// One observation as the test sink saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub endpoint: String,
    pub kind: VerdictKind,
    pub skip: Option<SkipReason>,
    pub has_event: bool,
    pub notes: Vec<String>,
    /// The request path (from the published event; `None` for matches and skips).
    pub path: Option<String>,
    pub differences: Vec<shadowdiff::compare::Difference>,
    pub send_skew: Option<Duration>,
}

/// Records observations; tests wait on the count (no sleeps).
pub struct TestSink {
    seen: Mutex<Vec<Seen>>,
    count: watch::Sender<usize>,
}

impl TestSink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        })
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    pub fn count_kind(&self, k: VerdictKind) -> usize {
        self.seen().iter().filter(|s| s.kind == k).count()
    }

    pub fn count_skip(&self, r: SkipReason) -> usize {
        self.seen().iter().filter(|s| s.skip == Some(r)).count()
    }

    /// Waits (up to 15 s) until at least `n` observations arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} observations: {:#?}", self.seen()))
            .unwrap();
        self.seen()
    }
}

impl Sink for TestSink {
    fn observe(&self, o: &Observation<'_>) {
        self.seen.lock().push(Seen {
            endpoint: o.endpoint.to_string(),
            kind: o.verdict.kind,
            skip: o.verdict.skip_reason,
            has_event: o.event.is_some(),
            notes: o.verdict.notes.clone(),
            path: o.event.map(|e| e.request.path.clone()),
            differences: o.verdict.differences.clone(),
            send_skew: o.send_skew,
        });
        self.count.send_modify(|c| *c += 1);
    }
}

/// A proxy config for these backends, listening on 127.0.0.1 port 0.
pub fn config(primary: &Backend, candidate: Upstream) -> ProxyConfig {
    let mut c = ProxyConfig::new(primary.upstream(), candidate);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.shutdown_grace = Duration::from_secs(10);
    c
}

pub struct Running {
    pub handle: Proxy,
    pub addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.handle.join())
            .await
            .expect("proxy did not stop within 30 s")
            .unwrap();
    }
}

/// Starts the proxy and its pipeline through the app's wiring, with `sink` behind it and a
/// learned-noise model built from the config's `noise:` section, as the sidecar does.
pub async fn start(cfg: ProxyConfig, sink: Arc<dyn Sink>) -> Running {
    let model = Arc::new(NoiseModel::new(
        shadowdiff::stats::noise::NoiseConfig::default(),
        cfg.grouping.max_endpoints,
    ));
    start_learning(cfg, sink, model).await
}

/// As [`start`], with the learned-noise model given (to read what it learned).
pub async fn start_learning(
    cfg: ProxyConfig,
    sink: Arc<dyn Sink>,
    model: Arc<NoiseModel>,
) -> Running {
    let (tx, rx) = oneshot::channel::<()>();
    let refine = Some(model as Arc<dyn shadowdiff::pipeline::Refine>);
    let stage = app::StageConfig::default();
    let handle = app::start_proxy(cfg, &stage, sink, refine, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    Running {
        addr: handle.local_addr(),
        handle,
        stop: Some(tx),
    }
}

pub fn h1_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends a request and reads the whole answer.
pub async fn send(
    client: &Client<HttpConnector, Body>,
    req: Request<Body>,
) -> (http::response::Parts, Bytes) {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("no response within 20 s")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts, body)
}

pub async fn get(
    client: &Client<HttpConnector, Body>,
    url: &str,
) -> (http::response::Parts, Bytes) {
    send(client, Request::get(url).body(full("")).unwrap()).await
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> Upstream {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    Upstream::parse(&format!("http://{addr}")).unwrap()
}

/// Polls `cond` until true or the deadline (for state that has no notification).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A port that was free a moment ago, for components that take a port, not a listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A component the test needs is not installed: skip (`None`) with a message, or fail when
/// `CI` is set.
pub fn missing<T>(what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing and CI is set: run scripts/install-test-deps.sh");
    }
    eprintln!(
        "SKIP: {what} is missing; run scripts/install-test-deps.sh (set CI=1 to fail instead)"
    );
    None
}

/// The executable `name` from PATH or one of `also_in`, or `None` after [`missing`].
pub fn installed(
    name: &str,
    also_in: &[std::path::PathBuf],
    what: &str,
) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(also_in.iter().cloned())
        .map(|d| d.join(name))
        .find(|f| f.is_file())
        .or_else(|| missing(what))
}

/// nginx in the foreground on `dir/nginx.conf` (written from `conf`, which keeps its files in
/// `dir`), returned once every port in `ports` accepts; nginx's error log is in the panic message
/// if one never does. Killed when the returned guard drops.
pub fn start_nginx(
    bin: &std::path::Path,
    dir: &std::path::Path,
    conf: &str,
    ports: &[u16],
) -> KillOnDrop {
    use std::process::{Command, Stdio};
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let p = dir.display().to_string();
    let mut child = Command::new(bin)
        .args(["-p", &p, "-c", "nginx.conf", "-e", "error.log"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let errors = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx did not listen on {port}: {errors}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    KillOnDrop(child)
}

/// A child process killed and reaped when this drops, however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `shadowdiff` process (the binary under test), its stdout and stderr in a log file,
/// killed on drop however the test ends.
pub struct Proc {
    name: String,
    child: Option<std::process::Child>,
    pub log: std::path::PathBuf,
}

impl Proc {
    /// Starts `shadowdiff ARGS` in `dir` with `env` on top of the test's environment.
    pub fn spawn(name: &str, dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Proc {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// Everything it wrote so far, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {} log ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Waits (up to 30 s) until `GET path` on `addr` answers 200, failing early if the process
    /// exits.
    pub fn wait_http_ok(&mut self, addr: SocketAddr, path: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited with {st}\n{}", self.name, self.logs());
            }
            if matches!(http_get(addr, path), Ok((200, _))) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} on {addr} not 200 within 30 s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits (up to 30 s) for a clean exit.
    pub fn terminate(&mut self) {
        let mut c = self.child.take().expect("already stopped");
        let st = std::process::Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(
                    st.success(),
                    "{} exited with {st}\n{}",
                    self.name,
                    self.logs()
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop within 30 s\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A blocking `GET` on a fresh connection (`Connection: close`, `Host` the address dialled):
/// the status and the body, de-chunked.
pub fn http_get(addr: SocketAddr, target: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(std::io::Error::other("no complete answer head")),
    };
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let status = resp.code.unwrap_or(0);
    let mut body = raw[n..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut b = &body[..];
        while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&b[..i]).unwrap_or("0");
            let len = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            b = &b[i + 2..];
            if len == 0 || b.len() < len {
                break;
            }
            out.extend_from_slice(&b[..len]);
            b = &b[(len + 2).min(b.len())..];
        }
        body = out;
    }
    Ok((status, body))
}
/// A whole sidecar (`app::Sidecar`: proxy, pipeline, sinks, admin API) started from a config
/// text, as `shadowdiff proxy --config` starts it.
pub struct SidecarRun {
    sidecar: app::Sidecar,
    stop: oneshot::Sender<()>,
}

impl SidecarRun {
    pub async fn from_yaml(yaml: &str) -> Self {
        let config =
            shadowdiff::config::Config::from_yaml(std::path::Path::new("test.yaml"), yaml).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let sidecar = app::Sidecar::start(app::Settings::load(config).unwrap(), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        Self { sidecar, stop }
    }

    /// Stops it as SIGTERM would, and waits (at most 30 s) until everything is flushed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.sidecar.join())
            .await
            .expect("sidecar did not stop")
            .unwrap();
    }
}

impl std::ops::Deref for SidecarRun {
    type Target = app::Sidecar;
    fn deref(&self) -> &app::Sidecar {
        &self.sidecar
    }
}

/// One of the demo's sample services (`shadowdiff demo --service`) on a free 127.0.0.1 port.
pub async fn demo_service(build: shadowdiff::demo::services::Build) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, shadowdiff::demo::services::router(build)).await;
    });
    format!("http://{addr}")
}

/// Fields of the summary's top-fields lists with differences not all explained as noise.
pub fn fields(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(f), Some(c), Some(n)) = (
                m.get("field").and_then(|f| f.as_str()),
                m.get("count").and_then(|c| c.as_u64()),
                m.get("noise").and_then(|n| n.as_u64()),
            ) && c > n
            {
                out.push(f.to_string());
            }
            m.values().for_each(|x| fields(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| fields(x, out)),
        _ => {}
    }
}

/// A summary's count of verdict `k` (0 when absent).
pub fn verdict(s: &serde_json::Value, k: &str) -> u64 {
    s["totals"]["verdicts"][k].as_u64().unwrap_or(0)
}
