//! The inline proxy on real sockets: byte-identical forwarding over HTTP/1.1 and h2c, what the
//! candidate receives, isolation from every kind of bad candidate, bounds, the circuit breaker,
//! graceful shutdown and the command line. Ordering is proven with channels, never with sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use shadowdiff::compare::pattern::EndpointPattern;
use shadowdiff::compare::{SkipReason, VerdictKind};
use shadowdiff::config::{RouteConfig, Upstream};
use shadowdiff::ingest::circuit::CircuitState;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const SMALL: &str = r#"{"id":42,"name":"widget","tags":["a","b"]}"#;

fn large_body() -> Bytes {
    // 5 MiB, not compressible into something trivial, deterministic.
    let mut v = Vec::with_capacity(5 << 20);
    let mut x: u32 = 0x1234_5678;
    while v.len() < 5 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

fn gzip(data: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    Bytes::from(e.finish().unwrap())
}

/// The primary used for forwarding tests: small, large, chunked and gzip answers.
async fn rich_primary() -> common::Backend {
    let large = large_body();
    let gz = gzip(SMALL.repeat(100).as_bytes());
    backend(move |r| {
        let (large, gz) = (large.clone(), gz.clone());
        async move {
            let path = r.uri.split('?').next().unwrap_or("").to_string();
            match path.as_str() {
                "/small" => Response::builder()
                    .header("content-type", "application/json")
                    .header("x-custom", "kept")
                    .body(full(SMALL))
                    .unwrap(),
                "/large" => Response::builder()
                    .header("content-type", "application/octet-stream")
                    .body(full(large))
                    .unwrap(),
                "/chunked" => {
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..50)
                        .map(|i| Ok(Frame::data(Bytes::from(format!("chunk {i};\n")))))
                        .collect();
                    Response::builder()
                        .header("content-type", "text/plain")
                        .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
                        .unwrap()
                }
                "/gzip" => Response::builder()
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(full(gz))
                    .unwrap(),
                _ => Response::builder().status(404).body(full("nope")).unwrap(),
            }
        }
    })
    .await
}

fn chunked_expected() -> Bytes {
    Bytes::from((0..50).map(|i| format!("chunk {i};\n")).collect::<String>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_byte_identical_over_http1_and_h2c() {
    let primary = rich_primary().await;
    let candidate = json_backend(SMALL).await;
    let sink = TestSink::new();
    let proxy = start(config(&primary, candidate.upstream()), sink.clone()).await;
    let expected: Vec<(&str, Bytes, Option<&str>)> = vec![
        ("/small", Bytes::from(SMALL), None),
        ("/large", large_body(), None),
        ("/chunked", chunked_expected(), None),
        ("/gzip", gzip(SMALL.repeat(100).as_bytes()), Some("gzip")),
    ];
    for (label, client) in [("http/1.1", h1_client()), ("h2c", h2c_client())] {
        // Twice each: the second round rides the kept-alive connection.
        for _ in 0..2 {
            for (path, body, enc) in &expected {
                let (parts, got) = get(&client, &proxy.url(path)).await;
                assert_eq!(parts.status, 200, "{label} {path}");
                assert!(
                    got == *body,
                    "{label} {path}: body differs ({} vs {} bytes)",
                    got.len(),
                    body.len()
                );
                assert_eq!(
                    parts
                        .headers
                        .get("content-encoding")
                        .map(|v| v.to_str().unwrap()),
                    *enc,
                    "{label} {path}: content-encoding must pass through untouched"
                );
                if *path == "/small" {
                    assert_eq!(parts.headers["x-custom"], "kept");
                    assert_eq!(parts.headers["content-type"], "application/json");
                }
                if label == "h2c" {
                    assert_eq!(parts.version, http::Version::HTTP_2);
                }
            }
        }
    }
    // 16 exchanges observed; the 5 MiB answers exceed the 4 MiB cap and are not compared.
    let seen = sink.wait_for(16).await;
    assert_eq!(sink.count_skip(SkipReason::BodyTooLarge), 4, "{seen:#?}");
    assert_eq!(proxy.handle.counters().requests.load(Ordering::Relaxed), 16);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidate_gets_the_same_request_with_header_changes_and_its_own_host() {
    let primary = json_backend(SMALL).await;
    let candidate = json_backend(SMALL).await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.strip_headers = vec!["x-secret".parse().unwrap()];
    cfg.shadow.set_headers = vec![
        ("x-shadow-request".parse().unwrap(), "1".parse().unwrap()),
        ("x-env".parse().unwrap(), "shadow".parse().unwrap()),
    ];
    cfg.shadow.routes = vec![RouteConfig {
        pattern: EndpointPattern::parse("POST /search").unwrap(),
        mirror: true,
    }];
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();

    let req = Request::get(proxy.url("/items/42?q=1&sort=desc"))
        .header("x-secret", "s3cr3t")
        .header("x-keep", "yes")
        .body(full(""))
        .unwrap();
    let (parts, _) = send(&client, req).await;
    assert_eq!(parts.status, 200);
    let p = primary.next().await;
    assert_eq!(
        p.headers["x-secret"], "s3cr3t",
        "the primary gets the request as sent"
    );
    assert_eq!(
        p.headers["host"],
        proxy.addr.to_string(),
        "the primary sees the client's Host"
    );
    assert!(p.headers.get("x-shadow-request").is_none());
    let c = candidate.next().await;
    assert_eq!(c.method, "GET");
    assert_eq!(c.uri, "/items/42?q=1&sort=desc");
    assert_eq!(c.headers["x-keep"], "yes");
    assert!(c.headers.get("x-secret").is_none(), "strip_headers");
    assert_eq!(c.headers["x-env"], "shadow", "set_headers");
    assert_eq!(c.headers["x-shadow-request"], "1", "marker");
    assert_eq!(
        c.headers["host"],
        candidate.addr.to_string(),
        "the candidate's own authority"
    );

    // POST on an opted-in route: mirrored with its body.
    let body = r#"{"query":"blue widgets","limit":10}"#;
    let req = Request::post(proxy.url("/search"))
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap();
    send(&client, req).await;
    assert_eq!(primary.next().await.body, body);
    let c = candidate.next().await;
    assert_eq!((c.method.as_str(), c.uri.as_str()), ("POST", "/search"));
    assert_eq!(c.body, body);

    // POST elsewhere: not mirrored. A request carrying the marker: not mirrored (loop).
    send(
        &client,
        Request::post(proxy.url("/orders"))
            .body(full("{}"))
            .unwrap(),
    )
    .await;
    let looped = Request::get(proxy.url("/looped"))
        .header("x-shadow-request", "1")
        .body(full(""))
        .unwrap();
    send(&client, looped).await;
    // The next mirrored request is the next thing the candidate sees: nothing came in between.
    get(&client, &proxy.url("/after")).await;
    assert_eq!(candidate.next().await.uri, "/after");

    sink.wait_for(5).await;
    assert_eq!(sink.count_skip(SkipReason::MethodNotMirrored), 1);
    assert_eq!(sink.count_skip(SkipReason::ShadowLoop), 1);
    assert_eq!(sink.count_kind(VerdictKind::Match), 3);
    let c = proxy.handle.counters();
    assert_eq!(c.skipped(SkipReason::MethodNotMirrored), 1);
    assert_eq!(c.skipped(SkipReason::ShadowLoop), 1);
    proxy.shutdown().await;
}

/// A candidate that answers only when released, and says when it got a request.
struct Held {
    backend: common::Backend,
    got: mpsc::UnboundedReceiver<()>,
    release: watch::Sender<bool>,
}

impl std::ops::Deref for Held {
    type Target = common::Backend;
    fn deref(&self) -> &common::Backend {
        &self.backend
    }
}

impl Held {
    /// Waits until the candidate has received `n` more requests (10 s each at most).
    async fn arrivals(&mut self, n: usize) {
        for i in 0..n {
            tokio::time::timeout(Duration::from_secs(10), self.got.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("the candidate received {i} of {n} requests within 10 s")
                })
                .unwrap();
        }
    }

    /// Lets every held request, and every later one, be answered at once.
    fn release(&self) {
        self.release.send(true).unwrap();
    }
}

async fn held_candidate() -> Held {
    let (got_tx, got) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let backend = backend(move |_| {
        let (got, mut released) = (got_tx.clone(), released.clone());
        async move {
            let _ = got.send(());
            // "Sleeps 30 s": in fact waits for the test to release it (or 30 s at most).
            let _ = tokio::time::timeout(Duration::from_secs(30), released.wait_for(|r| *r)).await;
            Response::builder()
                .header("content-type", "application/json")
                .body(full(SMALL))
                .unwrap()
        }
    })
    .await;
    Held {
        backend,
        got,
        release,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_candidate_never_delays_the_client_and_in_flight_is_bounded() {
    let primary = json_backend(SMALL).await;
    let mut candidate = held_candidate().await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.max_in_flight = 3;
    cfg.shadow.timeout = Duration::from_secs(60);
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    for i in 0..6 {
        // Sequential on one keep-alive connection: nginx `mirror` would stall request 2 here.
        let (parts, body) = get(&client, &proxy.url(&format!("/slow/{i}"))).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, SMALL);
    }
    // Every client response is complete; the candidate holds 3 requests and has answered none.
    candidate.arrivals(3).await;
    let counters = proxy.handle.counters();
    assert_eq!(counters.in_flight(), 3);
    assert_eq!(counters.in_flight_peak(), 3, "never above max_in_flight");
    assert_eq!(counters.skipped(SkipReason::ShadowQueueFull), 3);
    assert_eq!(
        sink.count_kind(VerdictKind::Match),
        0,
        "no verdict before the candidate answers"
    );
    candidate.release();
    sink.wait_for(6).await;
    assert_eq!(sink.count_kind(VerdictKind::Match), 3);
    assert_eq!(sink.count_skip(SkipReason::ShadowQueueFull), 3);
    eventually("shadows to finish", || counters.in_flight() == 0).await;
    assert_eq!(counters.in_flight_peak(), 3);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_connections_are_reused_and_never_more_than_max_in_flight() {
    let primary = json_backend(SMALL).await;
    let mut candidate = held_candidate().await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.max_in_flight = 4;
    cfg.shadow.timeout = Duration::from_secs(60);
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    // Four shadows held at once need four connections.
    for i in 0..6 {
        get(&client, &proxy.url(&format!("/held/{i}"))).await;
    }
    candidate.arrivals(4).await;
    assert_eq!(candidate.accepted(), 4);
    candidate.release();
    sink.wait_for(6).await;
    // Then sequential shadows, and bursts of them, all go out on those four (hyper's pool
    // opened more than `max_in_flight`: a finished shadow freed its permit before its
    // connection went back).
    for i in 0..10 {
        get(&client, &proxy.url(&format!("/one/{i}"))).await;
        sink.wait_for(7 + i).await;
    }
    for round in 0..5 {
        let burst = (0..8).map(|i| {
            let (client, url) = (client.clone(), proxy.url(&format!("/burst/{round}/{i}")));
            async move { get(&client, &url).await }
        });
        futures_util::future::join_all(burst).await;
    }
    sink.wait_for(16 + 40).await;
    let counters = proxy.handle.counters();
    eventually("shadows to finish", || counters.in_flight() == 0).await;
    assert_eq!(
        candidate.accepted(),
        4,
        "no connection beyond the first four"
    );
    assert!(sink.count_kind(VerdictKind::Match) >= 14);
    proxy.shutdown().await;
}

#[tokio::test]
async fn upstreams_given_by_name_are_resolved() {
    let primary = json_backend(SMALL).await;
    let candidate = json_backend(SMALL).await;
    let named = |b: &common::Backend| {
        Upstream::parse(&format!("http://localhost:{}", b.addr.port())).unwrap()
    };
    let sink = TestSink::new();
    let mut cfg = shadowdiff::config::ProxyConfig::new(named(&primary), named(&candidate));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    for i in 0..3 {
        let (parts, body) = get(&client, &proxy.url(&format!("/named/{i}"))).await;
        assert_eq!((parts.status.as_u16(), &body[..]), (200, SMALL.as_bytes()));
    }
    sink.wait_for(3).await;
    assert_eq!(sink.count_kind(VerdictKind::Match), 3);
    assert_eq!(
        candidate.next().await.headers["host"],
        format!("localhost:{}", candidate.addr.port()),
        "the candidate's own authority, as written"
    );
    proxy.shutdown().await;
}

/// Runs `n` requests against a proxy whose candidate misbehaves; the client must get every
/// primary answer, and each exchange must be a candidate_error.
async fn isolation_case(candidate: Upstream, timeout: Duration, expect_note: &str) {
    let primary = json_backend(SMALL).await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate);
    cfg.shadow.timeout = timeout;
    cfg.shadow.circuit.failures = 0; // every exchange reaches the candidate
    let proxy = start(cfg, sink.clone()).await;
    for client in [h1_client(), h2c_client()] {
        for i in 0..3 {
            let (parts, body) = get(&client, &proxy.url(&format!("/iso/{i}"))).await;
            assert_eq!(parts.status, 200);
            assert_eq!(body, SMALL);
        }
    }
    let seen = sink.wait_for(6).await;
    assert!(
        seen.iter()
            .all(|s| s.kind == VerdictKind::CandidateError && s.has_event),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.notes.iter().any(|n| n.contains(expect_note))),
        "expected notes containing {expect_note:?}: {seen:#?}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_never_reads_times_out_off_the_request_path() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds every connection without reading a byte.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let up = Upstream::parse(&format!("http://{addr}")).unwrap();
    // The candidate never answers, so the client's responses trivially come first.
    isolation_case(up, Duration::from_millis(300), "timed out").await;
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_resets_is_a_candidate_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let resetter = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request head, then abort the connection with an RST.
                let mut buf = [0u8; 1024];
                let _ = s.readable().await;
                let _ = s.try_read(&mut buf);
                #[allow(deprecated)]
                let _ = s.set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
    let up = Upstream::parse(&format!("http://{addr}")).unwrap();
    isolation_case(up, Duration::from_secs(5), "candidate:").await;
    resetter.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_candidate_is_a_candidate_error() {
    isolation_case(closed_port(), Duration::from_secs(5), "refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_answering_500_is_a_candidate_error() {
    let candidate =
        backend(|_| async { Response::builder().status(500).body(full("boom")).unwrap() }).await;
    isolation_case(candidate.upstream(), Duration::from_secs(5), "answered 500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_cap_reaches_the_primary_intact() {
    let primary = json_backend(SMALL).await;
    let candidate = json_backend(SMALL).await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.max_body_bytes = 1024;
    cfg.shadow.routes = vec![RouteConfig {
        pattern: EndpointPattern::parse("POST /upload").unwrap(),
        mirror: true,
    }];
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    let big = Bytes::from((0..64 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    // With a Content-Length (decided up front) ...
    send(
        &client,
        Request::post(proxy.url("/upload"))
            .body(full(big.clone()))
            .unwrap(),
    )
    .await;
    assert!(primary.next().await.body == big);
    // ... and chunked, without one (decided while streaming through the tee).
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = big
        .chunks(4096)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let streamed = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    send(
        &client,
        Request::post(proxy.url("/upload")).body(streamed).unwrap(),
    )
    .await;
    let got = primary.next().await;
    assert!(got.body == big);
    sink.wait_for(2).await;
    assert_eq!(sink.count_skip(SkipReason::BodyTooLarge), 2);
    assert_eq!(proxy.handle.counters().skipped(SkipReason::BodyTooLarge), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_failures_and_closes_after_the_cooldown() {
    let primary = json_backend(SMALL).await;
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let candidate = backend(move |_| {
        let ok = h.load(Ordering::SeqCst);
        async move {
            if ok {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(full(SMALL))
                    .unwrap()
            } else {
                Response::builder().status(503).body(full("down")).unwrap()
            }
        }
    })
    .await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.circuit.failures = 2;
    // Long enough that "open" is still true when asserted right after the second failure,
    // even on a loaded machine; the test waits for the half-open state, not for a fixed time.
    cfg.shadow.circuit.cooldown = Duration::from_secs(2);
    let proxy = start(cfg, sink.clone()).await;
    let circuit = proxy.handle.circuit();
    let client = h1_client();
    for n in 1..=2 {
        get(&client, &proxy.url("/c")).await;
        sink.wait_for(n).await; // the failure is recorded before the verdict is queued
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    get(&client, &proxy.url("/c")).await;
    sink.wait_for(3).await;
    assert_eq!(sink.count_skip(SkipReason::CircuitOpen), 1);
    assert_eq!(sink.count_kind(VerdictKind::CandidateError), 2);

    healthy.store(true, Ordering::SeqCst);
    eventually("the cool-down to end", || {
        circuit.state() == CircuitState::HalfOpen
    })
    .await;
    get(&client, &proxy.url("/c")).await; // the probe
    sink.wait_for(4).await;
    assert_eq!(circuit.state(), CircuitState::Closed);
    get(&client, &proxy.url("/c")).await;
    sink.wait_for(5).await;
    assert_eq!(sink.count_kind(VerdictKind::Match), 2);
    assert_eq!(sink.count_skip(SkipReason::CircuitOpen), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_failure_is_a_502_and_counted() {
    let candidate = json_backend(SMALL).await;
    let sink = TestSink::new();
    let mut cfg = shadowdiff::config::ProxyConfig::new(closed_port(), candidate.upstream());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let proxy = start(cfg, sink.clone()).await;
    let (parts, body) = get(&h1_client(), &proxy.url("/x")).await;
    assert_eq!(parts.status, 502);
    assert!(
        String::from_utf8_lossy(&body).contains("primary"),
        "{body:?}"
    );
    sink.wait_for(1).await;
    assert_eq!(sink.count_skip(SkipReason::PrimaryError), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_then_flushes_the_file_sink() {
    let (release, released) = watch::channel(false);
    let primary = backend(move |rec| {
        let mut released = released.clone();
        async move {
            if rec.uri.starts_with("/slow") {
                let _ = released.wait_for(|r| *r).await;
            }
            Response::builder()
                .header("content-type", "application/json")
                .body(full(r#"{"v":1}"#))
                .unwrap()
        }
    })
    .await;
    let candidate = json_backend(r#"{"v":2}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let file = Arc::new(
        shadowdiff::sink::file::FileSink::open(&shadowdiff::config::FileSinkConfig {
            path: path.clone(),
            ..Default::default()
        })
        .unwrap(),
    );
    let counting = TestSink::new();
    let fan = shadowdiff::pipeline::Fanout::new(vec![file.clone(), counting.clone()]);
    let proxy = start(config(&primary, candidate.upstream()), Arc::new(fan)).await;
    let url = proxy.url("/slow/1");
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { get(&h1_client(), &url).await });
    assert!(primary.next().await.uri.starts_with("/slow"));
    // SIGTERM-equivalent while the request is in flight.
    let Running { handle, stop, .. } = proxy;
    stop.unwrap().send(()).unwrap();
    // New connections are refused once the listener is closed.
    eventually("the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    release.send(true).unwrap();
    let (parts, body) = in_flight.await.unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(body, r#"{"v":1}"#);
    tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .unwrap()
        .unwrap();
    // The mismatch was compared during the drain and is on disk after join.
    assert_eq!(counting.count_kind(VerdictKind::Mismatch), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains(r#""verdict":"mismatch""#), "{}", lines[0]);
    assert_eq!(file.counters().snapshot()[0], ("written", 1));
}

#[test]
fn check_config_reports_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shadowdiff.yaml");
    std::fs::write(
        &path,
        "primary: http://127.0.0.1:8081\n\
         candidate: localhost:9000\n\
         shadow:\n  timeout: 5 seconds\n  max_in_flight: 0\n  colour: red\n\
         compare: {workers: many}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = path.display().to_string();
    for (line, what) in [
        (2, "candidate:"),
        (4, "shadow.timeout: invalid duration \"5 seconds\""),
        (5, "shadow.max_in_flight: must be at least 1"),
        (6, "shadow.colour: unknown field"),
        (7, "compare.workers:"),
    ] {
        let prefix = format!("{name}:{line}: {what}");
        assert!(
            err.lines().any(|l| l.starts_with(&prefix)),
            "missing {prefix:?} in:\n{err}"
        );
    }

    std::fs::write(
        &path,
        "primary: http://127.0.0.1:8081\ncandidate: http://127.0.0.1:9000\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .current_dir(dir.path())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_proxies_with_only_primary_and_candidate_flags() {
    let primary = json_backend(SMALL).await;
    let candidate = json_backend(SMALL).await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .current_dir(dir.path())
            .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--primary", &format!("http://{}", primary.addr)])
            .args(["--candidate", &format!("http://{}", candidate.addr)])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the proxy to accept", || {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    let (parts, body) = get(&h1_client(), &format!("http://{addr}/items/1")).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, SMALL);
    assert_eq!(candidate.next().await.uri, "/items/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_through_to_the_client() {
    let primary = backend(|_| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "abc123".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"part one,"))),
            Ok(Frame::data(Bytes::from_static(b"part two"))),
            Ok(Frame::trailers(trailers)),
        ];
        Response::builder()
            .header("trailer", "x-checksum")
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap()
    })
    .await;
    let candidate = json_backend(SMALL).await;
    let proxy = start(config(&primary, candidate.upstream()), TestSink::new()).await;
    for client in [h1_client(), h2c_client()] {
        let req = Request::get(proxy.url("/t"))
            .header("te", "trailers")
            .body(full(""))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        assert_eq!(collected.to_bytes(), "part one,part two");
        assert_eq!(
            trailers
                .as_ref()
                .and_then(|t| t.get("x-checksum"))
                .map(|v| v.to_str().unwrap()),
            Some("abc123")
        );
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_turns_shared_differences_into_noise_and_endpoints_are_templated() {
    let primary = json_backend(r#"{"id":7,"generated":"t1"}"#).await;
    let secondary = json_backend(r#"{"id":7,"generated":"t2"}"#).await;
    let same_noise = json_backend(r#"{"id":7,"generated":"t3"}"#).await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, same_noise.upstream());
    cfg.secondary = Some(secondary.upstream());
    let proxy = start(cfg, sink.clone()).await;
    get(&h1_client(), &proxy.url("/orders/12345?expand=1")).await;
    assert_eq!(secondary.next().await.uri, "/orders/12345?expand=1");
    let seen = sink.wait_for(1).await;
    assert_eq!(seen[0].kind, VerdictKind::Noise, "{seen:#?}");
    assert_eq!(seen[0].endpoint, "GET /orders/{id}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadows_still_in_flight_at_the_deadline_are_abandoned() {
    let primary = json_backend(SMALL).await;
    let mut candidate = held_candidate().await; // never released
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.timeout = Duration::from_secs(60);
    cfg.shutdown_grace = Duration::from_millis(300);
    let proxy = start(cfg, sink.clone()).await;
    get(&h1_client(), &proxy.url("/held")).await;
    candidate.arrivals(1).await;
    let counters = proxy.handle.counters();
    assert_eq!(counters.in_flight(), 1);
    let started = std::time::Instant::now();
    proxy.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown waited for the shadow"
    );
    assert_eq!(counters.shadows_abandoned.load(Ordering::Relaxed), 1);
    assert_eq!(counters.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_bounds_what_shadows_hold_and_never_touches_the_client() {
    // 30 kB answers from the primary; the candidate answers a few bytes, only when released.
    let big: Bytes = Bytes::from(
        (0..30_000u32)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let b = big.clone();
    let primary = backend(move |_| {
        let b = b.clone();
        async move { Response::builder().body(full(b)).unwrap() }
    })
    .await;
    let mut candidate = held_candidate().await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.max_buffered_bytes = 100_000;
    cfg.shadow.timeout = Duration::from_secs(60);
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    for i in 0..8 {
        let (parts, body) = get(&client, &proxy.url(&format!("/big/{i}"))).await;
        assert_eq!(parts.status, 200);
        assert!(
            body == big,
            "request {i}: the client gets the primary's bytes"
        );
    }
    candidate.arrivals(8).await;
    // Three primary copies fit in 100 kB; the other five were given up as they came.
    let budget = proxy.handle.counters().buffered.clone();
    assert_eq!((budget.used(), budget.peak()), (90_000, 90_000));
    candidate.release();
    sink.wait_for(8).await;
    assert_eq!(sink.count_skip(SkipReason::MemoryBudget), 5);
    // The three kept exchanges were compared (their small candidate answers fit too).
    assert_eq!(sink.count_kind(VerdictKind::Mismatch), 3);
    assert!(budget.peak() <= 100_000, "peak {}", budget.peak());
    let counters = proxy.handle.counters();
    assert_eq!(counters.skipped(SkipReason::MemoryBudget), 5);
    // Every byte comes back once the comparisons are done.
    eventually("the budget to empty", || budget.used() == 0).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_io_threads_shed_shadows_and_recover_when_the_load_goes() {
    let primary = json_backend(SMALL).await;
    let candidate = json_backend(SMALL).await;
    let sink = TestSink::new();
    let mut cfg = config(&primary, candidate.upstream());
    cfg.shadow.overload.after = Duration::from_millis(200);
    let proxy = start(cfg, sink.clone()).await;
    let counters = proxy.handle.counters();
    let client = h1_client();
    assert_eq!(counters.overload.admit_ratio(), 1.0);

    // Real saturation of the runtime the proxy runs on: one spinner per worker, yielding every
    // 200 µs so that the proxy's own tasks still run between its turns.
    let spinning = Arc::new(AtomicBool::new(true));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let spinning = spinning.clone();
            tokio::spawn(async move {
                while spinning.load(Ordering::Relaxed) {
                    let t = std::time::Instant::now();
                    while t.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    eventually("shedding to reach zero", || {
        counters.overload.admit_ratio() == 0.0
    })
    .await;
    assert!(counters.overload.busy_ratio() > 0.9);
    for i in 0..10 {
        let (parts, body) = get(&client, &proxy.url(&format!("/hot/{i}"))).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, SMALL, "a shed request is still forwarded");
    }
    assert_eq!(counters.skipped(SkipReason::Overload), 10);
    assert_eq!(counters.shadows_started.load(Ordering::Relaxed), 0);

    // The load goes: admission climbs back (a tenth per 100 ms) and every request is shadowed.
    spinning.store(false, Ordering::Relaxed);
    for s in spinners {
        s.await.unwrap();
    }
    eventually("admission to recover", || {
        counters.overload.admit_ratio() == 1.0
    })
    .await;
    for i in 0..10 {
        let (parts, body) = get(&client, &proxy.url(&format!("/cool/{i}"))).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, SMALL);
    }
    let seen = sink.wait_for(20).await;
    assert_eq!(sink.count_skip(SkipReason::Overload), 10);
    assert_eq!(sink.count_kind(VerdictKind::Match), 10);
    // The candidate saw exactly the requests made after the load went.
    let mut paths = Vec::new();
    for _ in 0..10 {
        paths.push(candidate.next().await.uri);
    }
    paths.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("/cool/{i}")).collect();
    expected.sort();
    assert_eq!(paths, expected);
    assert_eq!(seen.len(), 20);
    proxy.shutdown().await;
}
