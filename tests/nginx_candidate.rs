//! The shadow client against a server nobody here wrote: nginx as primary and candidate, serving
//! files. Content-length and chunked (gzip) answers, HEAD, 304, a real difference, and nginx
//! closing kept connections after `keepalive_requests` — read from nginx's own access log.
//! nginx is installed by `scripts/install-test-deps.sh`; without it the test skips with a
//! message, unless `CI` is set, where a missing nginx is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Request;
use shadowdiff::compare::VerdictKind;
use shadowdiff::config::{ProxyConfig, Upstream};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One nginx process (no master, no daemon) with a primary and a candidate server.
struct Nginx {
    _nginx: KillOnDrop,
    dir: tempfile::TempDir,
    primary: u16,
    candidate: u16,
}

const ITEM: &str = r#"{"id":7,"name":"lamp","price":{"amount":"19.90","currency":"EUR"}}"#;

impl Nginx {
    fn start(bin: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A ~40 KB body that gzip shrinks: nginx then sends it chunked (length unknown).
        let big: String = (0..400)
            .map(|i| format!(r#"{{"n":{i},"label":"row {i} of the catalogue"}},"#))
            .collect();
        let big = format!("[{}{{}}]", big);
        // Same mtime on both sides, so nginx's ETags (mtime-size) agree.
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (side, changed) in [("p", r#"{"v":1}"#), ("c", r#"{"v":2}"#)] {
            for (path, body) in [
                ("static/item.json", ITEM),
                ("gz/big.json", big.as_str()),
                ("static/changed.json", changed),
            ] {
                let f = d.join(side).join(path);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(&f, body).unwrap();
                std::fs::File::options()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_modified(mtime)
                    .unwrap();
            }
        }
        let (primary, candidate) = (free_port(), free_port());
        let p = d.display();
        let conf = format!(
            r#"worker_processes 1;
daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {p}/tmp-body;
  proxy_temp_path {p}/tmp-proxy;
  fastcgi_temp_path {p}/tmp-fastcgi;
  uwsgi_temp_path {p}/tmp-uwsgi;
  scgi_temp_path {p}/tmp-scgi;
  types {{ application/json json; }}
  default_type application/octet-stream;
  gzip on;
  gzip_min_length 0;
  gzip_types application/json;
  log_format conn '$connection $connection_requests $request_method $uri $status';
  server {{ listen 127.0.0.1:{primary}; root {p}/p; }}
  server {{
    listen 127.0.0.1:{candidate};
    root {p}/c;
    keepalive_requests 3;
    access_log {p}/candidate.log conn;
  }}
}}
"#
        );
        let _nginx = start_nginx(bin, d, &conf, &[primary, candidate]);
        Nginx {
            _nginx,
            dir,
            primary,
            candidate,
        }
    }

    /// The candidate's access log: (connection, its request number, method, uri, status).
    fn candidate_log(&self) -> Vec<(u64, u64, String, String, u16)> {
        std::fs::read_to_string(self.dir.path().join("candidate.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].to_string(),
                    f[3].to_string(),
                    f[4].parse().unwrap(),
                )
            })
            .collect()
    }

    fn upstream(port: u16) -> Upstream {
        Upstream::parse(&format!("http://127.0.0.1:{port}")).unwrap()
    }
}

/// The head of nginx's answer to a raw request, to prove which framing a case exercises.
fn raw_head(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "nginx closed before the head");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_as_candidate_keep_alive_chunked_gzip_head_304_and_its_connection_closes() {
    let Some(bin) = installed("nginx", &[PathBuf::from("/usr/sbin")], "nginx") else {
        return;
    };
    let nginx = Nginx::start(&bin);
    // The cases below exercise what they say: gzip answers are chunked, plain ones are not.
    let gz = raw_head(
        nginx.candidate,
        "GET /gz/big.json HTTP/1.1\r\nhost: x\r\naccept-encoding: gzip\r\nconnection: close\r\n\r\n",
    );
    assert!(gz.contains("transfer-encoding: chunked") && gz.contains("content-encoding: gzip"));
    let plain = raw_head(
        nginx.candidate,
        "GET /static/item.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(plain.contains("content-length: "));
    let etag = plain
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_string();

    let sink = TestSink::new();
    let mut cfg = ProxyConfig::new(
        Nginx::upstream(nginx.primary),
        Nginx::upstream(nginx.candidate),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();

    let mut sent = 0;
    for _ in 0..4 {
        let (parts, body) = get(&client, &proxy.url("/static/item.json")).await;
        assert_eq!((parts.status.as_u16(), &body[..]), (200, ITEM.as_bytes()));
        sent += 1;
        // One at a time: each shadow is back before the next, so connections are reused.
        sink.wait_for(sent).await;
    }
    for _ in 0..2 {
        let req = Request::get(proxy.url("/gz/big.json"))
            .header("accept-encoding", "gzip")
            .body(full(""))
            .unwrap();
        let (parts, _) = send(&client, req).await;
        assert_eq!(parts.headers["content-encoding"], "gzip");
        sent += 1;
        sink.wait_for(sent).await;
    }
    let head = Request::head(proxy.url("/static/item.json"))
        .body(full(""))
        .unwrap();
    assert_eq!(send(&client, head).await.0.status, 200);
    sent += 1;
    sink.wait_for(sent).await;
    let cond = Request::get(proxy.url("/static/item.json"))
        .header("if-none-match", &etag)
        .body(full(""))
        .unwrap();
    assert_eq!(send(&client, cond).await.0.status, 304);
    sent += 1;
    sink.wait_for(sent).await;
    get(&client, &proxy.url("/static/changed.json")).await;
    sent += 1;
    let seen = sink.wait_for(sent).await;

    let kinds: Vec<VerdictKind> = seen.iter().map(|s| s.kind).collect();
    assert_eq!(
        sink.count_kind(VerdictKind::Match),
        8,
        "every answer alike but one: {kinds:?} {:#?}",
        seen.iter().map(|s| &s.notes).collect::<Vec<_>>()
    );
    assert_eq!(sink.count_kind(VerdictKind::Mismatch), 1);
    let mismatch = seen
        .iter()
        .find(|s| s.kind == VerdictKind::Mismatch)
        .unwrap();
    assert!(mismatch.endpoint.ends_with("/static/changed.json"));

    // nginx's view: every shadow arrived (the two raw requests first); it closed each kept
    // connection after 3 requests, and the client moved to a new one each time, never sending
    // on a closed connection (which nginx would not have logged) and never failing.
    let log = nginx.candidate_log();
    let shadows = &log[2..];
    assert_eq!(shadows.len(), 9, "{log:?}");
    let statuses: Vec<u16> = shadows.iter().map(|l| l.4).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 304, 200]);
    assert_eq!(shadows[6].2, "HEAD");
    let mut per_conn: BTreeMap<u64, u64> = BTreeMap::new();
    for (conn, nth, ..) in shadows {
        let e = per_conn.entry(*conn).or_default();
        *e += 1;
        assert_eq!(*e, *nth, "requests on connection {conn} in order: {log:?}");
    }
    assert_eq!(
        per_conn.values().copied().collect::<Vec<_>>(),
        [3, 3, 3],
        "keep-alive used to nginx's limit of 3, then a new connection: {log:?}"
    );
    proxy.shutdown().await;
}
