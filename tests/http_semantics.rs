//! HTTP semantics at the proxy's front door (issue 12, item 5), with raw bytes on real sockets —
//! a client library would refuse to send most of these requests: absolute-form authority over
//! Host, zero and several Host lines, CONNECT, and a chunked request with trailers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, Recorded, TestSink, backend, full};
use http::{Method, Response};
use shadowdiff::compare::VerdictKind;
use shadowdiff::ingest::config::HostPolicy;
use shadowdiff::ingest::semantics::Refused;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `raw` and reads the whole answer (the proxy closes after it: every request here says
/// `Connection: close`, and refusals close by themselves).
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the proxy did not close the connection within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

async fn echo() -> Backend {
    backend(|r: Recorded| async move {
        Response::builder()
            .header("content-type", "application/json")
            .body(full(format!(
                "{{\"host\":{:?},\"body\":{:?}}}",
                r.headers
                    .get("host")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default(),
                String::from_utf8_lossy(&r.body)
            )))
            .unwrap()
    })
    .await
}

fn host(r: &Recorded) -> Vec<String> {
    r.headers
        .get_all("host")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_rfcs_refuse_never_reach_the_primary_and_host_is_settled() {
    let (primary, candidate) = (echo().await, echo().await);
    let sink = TestSink::new();
    let mut cfg = common::config(&primary, candidate.upstream());
    cfg.shadow.host = HostPolicy::Original;
    let proxy = common::start(cfg, sink.clone()).await;
    let addr = proxy.addr;

    // Absolute-form: the URI's authority wins over Host, for the primary and the shadow alike.
    let a = exchange(
        addr,
        b"GET http://a.example/abs HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&a), 200, "{a}");
    let seen = primary.next().await;
    assert_eq!(
        (seen.uri.as_str(), host(&seen)),
        ("/abs", vec!["a.example".to_string()])
    );
    assert_eq!(host(&candidate.next().await), ["a.example"]);

    // Refused: answered by the proxy, connection closed, never forwarded.
    let cases: [(&[u8], u16, Refused); 5] = [
        (
            b"GET /two HTTP/1.1\r\nHost: a.example\r\nHost: evil.example\r\n\r\n",
            400,
            Refused::MultipleHosts,
        ),
        (
            b"GET /same HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n",
            400,
            Refused::MultipleHosts,
        ),
        (b"GET /none HTTP/1.1\r\n\r\n", 400, Refused::MissingHost),
        (
            b"GET /bad HTTP/1.1\r\nHost: a.example/../x\r\n\r\n",
            400,
            Refused::InvalidHost,
        ),
        (
            b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n",
            405,
            Refused::Connect,
        ),
    ];
    for (raw, want, reason) in cases {
        let a = exchange(addr, raw).await;
        assert_eq!(status(&a), want, "{a}");
        if reason == Refused::Connect {
            assert!(a.to_ascii_lowercase().contains("\r\nallow: get"), "{a}");
        }
        assert_eq!(proxy.handle.counters().refused.get(reason) as usize, {
            // Each reason is used once above, except the repeated Host.
            if reason == Refused::MultipleHosts && raw.starts_with(b"GET /same") {
                2
            } else {
                1
            }
        });
    }

    // HTTP/1.0 had no Host: forwarded as it is.
    let a = exchange(addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&a), 200, "{a}");
    // The next request the primary saw is this one: nothing refused got through.
    // (Upstream it goes out as HTTP/1.1, which needs a Host: the primary's authority.)
    let seen = primary.next().await;
    assert_eq!(seen.uri, "/old");
    assert_eq!(host(&seen), [primary.addr.to_string()]);
    proxy.shutdown().await;
}

/// A primary that reads one raw request (up to the end of a chunked body's trailer section),
/// answers `ok`, and hands over the bytes it read: hyper's server would hide the trailers.
async fn raw_primary() -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if n == 0 || text.contains("\r\n0\r\n") && text.ends_with("\r\n\r\n") {
                break;
            }
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: Thu, 03 Dec 2026 00:00:00 GMT\r\nconnection: close\r\n\r\nok")
            .await
            .unwrap();
        let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_with_trailers_is_forwarded_whole_and_shadowed() {
    let (paddr, primary_saw) = raw_primary().await;
    let candidate = backend(|_| async { Response::new(full("ok")) }).await;
    let sink = TestSink::new();
    let primary = shadowdiff::ingest::config::Upstream::parse(&format!("http://{paddr}")).unwrap();
    let mut cfg = shadowdiff::ingest::config::ProxyConfig::new(primary, candidate.upstream());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.shadow.methods.push(Method::POST);
    let proxy = common::start(cfg, sink.clone()).await;

    let a = exchange(
        proxy.addr,
        b"POST /upload HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\
          Trailer: x-checksum\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 5eb63bbbe0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&a), 200, "{a}");
    assert!(a.ends_with("ok"), "{a}");
    // The primary gets the body and its trailer section, as the client sent them.
    let raw = primary_saw.await.unwrap().to_ascii_lowercase();
    assert!(raw.contains("hello") && raw.contains(" world"), "{raw}");
    assert!(
        raw.contains("\r\n0\r\nx-checksum: 5eb63bbbe0\r\n\r\n"),
        "{raw}"
    );
    // The candidate gets the body (trailers are not sent to shadows: README, "HTTP semantics").
    assert_eq!(candidate.next().await.body, "hello world");
    // Compared, not skipped; the bodies agree (only the two servers' `date` headers differ).
    let seen = sink.wait_for(1).await;
    assert_ne!(seen[0].kind, VerdictKind::Skipped, "{seen:#?}");
    assert!(
        seen[0]
            .differences
            .iter()
            .all(|d| d.path == "@headers/date"),
        "{seen:#?}"
    );
    proxy.shutdown().await;
}

/// The same refusals from the real binary, counted in its `/metrics`.
#[test]
fn the_binary_refuses_connect_and_ambiguous_hosts_and_counts_them() {
    use common::process::{BIN, Process};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (primary, candidate) = rt.block_on(async { (echo().await, echo().await) });
    let dir = tempfile::tempdir().unwrap();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "proxy",
        "--listen",
        &listen.to_string(),
        "--admin",
        &admin.to_string(),
    ])
    .args(["--primary", &format!("http://{}", primary.addr)])
    .args(["--candidate", &format!("http://{}", candidate.addr)]);
    let p = Process::start(cmd, dir.path(), admin);
    let ask = |raw: &'static [u8]| rt.block_on(exchange(listen, raw));
    let a = ask(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n");
    assert_eq!(status(&a), 405, "{a}");
    let a = ask(b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n");
    assert_eq!(status(&a), 400, "{a}");
    let a = ask(b"GET /ok HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&a), 200, "{a}");
    // Only the last request reached the primary.
    assert_eq!(rt.block_on(primary.next()).uri, "/ok");
    for (reason, n) in [
        ("connect", 1.0),
        ("multiple_hosts", 1.0),
        ("missing_host", 0.0),
    ] {
        assert_eq!(
            p.metric("shadowdiff_requests_refused_total", &[("reason", reason)]),
            n,
            "{reason}"
        );
    }
}
