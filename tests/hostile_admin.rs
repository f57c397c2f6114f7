//! The admin server as an attacker meets it (issue 12, item 4): the real binary, real sockets.
//!
//! - exposing the admin API beyond loopback without a token is refused at start (exit 64);
//! - with a token, every data route wants it (401 without, 401 wrong, 200 right), while `/`,
//!   `/healthz` and `/readyz` stay open;
//! - a `Host` that is not this server (DNS rebinding: `evil.example` re-pointed at 127.0.0.1) is
//!   refused with 421, token or not; `localhost:PORT` and the address dialled pass;
//! - `shadowdiff gate` sends the token from `--token-file` or `SHADOWDIFF_ADMIN_TOKEN`;
//! - the token never reaches the logs, and logs to a pipe carry no colour codes;
//! - `shadowdiff aggregate` serves the same router under the same rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{BIN, Process};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-admin-token-0123456789abcdef";

/// Every route that serves data (or could): each must want the token.
const DATA_ROUTES: &[&str] = &[
    "/metrics",
    "/api/v1/summary",
    "/api/v1/mismatches",
    "/api/v1/mismatches/01ANYTHING",
    "/api/v1/signatures",
    "/api/v1/gate",
    "/api/v1/noise",
    "/api/v1/noise/rules",
    "/no/such/route",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address of this machine that is not loopback (the one the default route leaves from), if
/// there is one: it stands in for a pod IP.
fn non_loopback_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it only picks the route and the source address.
    s.connect("203.0.113.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One request over a fresh connection to `addr`, written byte for byte as given: `host` is
/// the `Host` header (none when `None`), `extra` more header lines.
fn request(addr: SocketAddr, target: &str, host: Option<&str>, extra: &[&str]) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("GET {target} HTTP/1.1\r\n");
    if let Some(h) = host {
        head.push_str(&format!("Host: {h}\r\n"));
    }
    for e in extra {
        head.push_str(e);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(&buf).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial answer to {target}"),
    };
    let headers: HashMap<String, String> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        dechunk(&buf[n..])
    } else {
        buf[n..].to_vec()
    };
    Answer {
        status: resp.code.unwrap(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        b = &b[i + 2..];
        if len == 0 {
            break;
        }
        out.extend_from_slice(&b[..len]);
        b = &b[len + 2..];
    }
    out
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}")
}

/// Starts `shadowdiff ARGS` in `dir` with `admin_port` for its admin server and waits until
/// `/healthz` answers on 127.0.0.1 (readiness, not a fixed sleep); killed however the test ends.
fn start(dir: &Path, args: &[&str], admin_port: u16) -> Process {
    let mut cmd = Command::new(BIN);
    // Debug logs too: the token must not show up even there.
    cmd.args(args).env("RUST_LOG", "shadowdiff=debug,info");
    Process::start(cmd, dir, SocketAddr::from(([127, 0, 0, 1], admin_port)))
}

/// A config for `shadowdiff proxy` in `dir`: upstreams that are never contacted (no traffic is
/// sent), events to a file in `dir`, and `admin` as given.
fn proxy_config(dir: &Path, admin_yaml: &str) -> std::path::PathBuf {
    let p = dir.join("shadowdiff.yaml");
    std::fs::write(
        &p,
        format!(
            "listen: 127.0.0.1:{}\nprimary: http://127.0.0.1:9\ncandidate: http://127.0.0.1:10\n\
             sinks:\n  file: {{path: {}}}\n{admin_yaml}",
            free_port(),
            dir.join("events.jsonl").display()
        ),
    )
    .unwrap();
    p
}

fn write_token(dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    // A trailing newline, as `echo` and editors leave it: trimmed by the server and the client.
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p
}

/// Runs `shadowdiff ARGS` to its end. A command expected to refuse to start must not hang the
/// test when it starts after all: after 60 s it is killed and the test fails saying so.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env_remove("SHADOWDIFF_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "shadowdiff {args:?} still running after 60 s (it should have exited):\n{}",
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn exposing_the_admin_api_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = proxy_config(dir.path(), &format!("admin: 0.0.0.0:{port}\n"));
    let cfg_s = cfg.to_str().unwrap();

    // From the config file: exit 64, the problem at its line, before anything listens.
    let o = run(dir.path(), &["proxy", "--config", cfg_s], &[]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "shadowdiff.yaml:6: admin.listen: 0.0.0.0:{port} is not a loopback address"
        )) && err.contains("token_file"),
        "{}",
        text(&o)
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing may listen on the admin port"
    );
    // check-config says the same.
    let o = run(dir.path(), &["check-config", cfg_s], &[]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(":6: admin.listen:"),
        "{}",
        text(&o)
    );

    // From the command line: `--admin` on a non-loopback address, no config file.
    let flag = format!("[::]:{port}");
    let o = run(
        dir.path(),
        &[
            "proxy",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--primary",
            "http://127.0.0.1:9",
            "--candidate",
            "http://127.0.0.1:10",
            "--admin",
            &flag,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a loopback address"),
        "{}",
        text(&o)
    );

    // A token file that cannot be read, or is empty: also exit 64, at the token_file line.
    let missing = dir.path().join("no-such-token");
    let cfg = proxy_config(
        dir.path(),
        &format!(
            "admin:\n  listen: 0.0.0.0:{port}\n  token_file: {}\n",
            missing.display()
        ),
    );
    let o = run(dir.path(), &["check-config", cfg.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(":8: admin.token_file: cannot read"),
        "{}",
        text(&o)
    );
    let empty = write_token(dir.path(), "empty", "  ");
    let cfg = proxy_config(
        dir.path(),
        &format!(
            "admin: {{listen: 0.0.0.0:{port}, token_file: {}}}\n",
            empty.display()
        ),
    );
    let o = run(
        dir.path(),
        &["proxy", "--config", cfg.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is empty"),
        "{}",
        text(&o)
    );
}

#[test]
fn with_a_token_every_data_route_wants_it_and_hosts_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = write_token(dir.path(), "admin-token", TOKEN);
    let port = free_port();
    // 0.0.0.0, as in a pod: the token is mandatory there.
    let cfg = proxy_config(
        dir.path(),
        &format!(
            "admin:\n  listen: 0.0.0.0:{port}\n  token_file: {}\n  allowed_hosts: [shadowdiff-admin.example]\n",
            token_file.display()
        ),
    );
    let sd = start(
        dir.path(),
        &["proxy", "--config", cfg.to_str().unwrap()],
        port,
    );
    let a = sd.admin;
    let host = a.to_string();
    let h = Some(host.as_str());
    let right = bearer(TOKEN);

    for route in DATA_ROUTES {
        let r = request(a, route, h, &[]);
        assert_eq!(r.status, 401, "{route} without a token: {}", r.body);
        assert_eq!(
            r.headers.get("www-authenticate").map(String::as_str),
            Some("Bearer realm=\"shadowdiff\""),
            "{route}"
        );
        let r = request(
            a,
            route,
            h,
            &[&bearer("s3cret-admin-token-0123456789abcdeX")],
        );
        assert_eq!(r.status, 401, "{route} with a wrong token");
        assert!(
            r.headers["www-authenticate"].contains("invalid_token"),
            "{route}: {:?}",
            r.headers
        );
        // The token as a Basic credential, or as a prefix, is not the token.
        let r = request(a, route, h, &[&format!("Authorization: Basic {TOKEN}")]);
        assert_eq!(r.status, 401, "{route} with Basic");
        let r = request(a, route, h, &[&bearer(&TOKEN[..TOKEN.len() - 1])]);
        assert_eq!(r.status, 401, "{route} with a prefix of the token");
    }
    let r = request(a, "/api/v1/mismatches", h, &[&right]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["mismatches"].is_array(), "{v}");
    let r = request(a, "/api/v1/summary?window=all", h, &[&right]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(request(a, "/no/such/route", h, &[&right]).status, 404);

    // Probes and the UI page (static, no data) need no token.
    assert_eq!(request(a, "/healthz", h, &[]).status, 200);
    assert_eq!(request(a, "/readyz", h, &[]).status, 200);
    let ui = request(a, "/", h, &[]);
    assert_eq!(ui.status, 200);
    assert!(ui.headers["content-type"].starts_with("text/html"));

    // DNS rebinding: evil.example re-pointed at this address. Refused on every route, the
    // probes included, and a valid token does not change that.
    for (route, auth) in [
        ("/healthz", None),
        ("/", None),
        ("/api/v1/mismatches", Some(right.as_str())),
        ("/metrics", Some(right.as_str())),
    ] {
        for evil in [
            "evil.example".to_string(),
            format!("evil.example:{port}"),
            format!("localhost.evil.example:{port}"),
            format!("127.0.0.1.evil.example:{port}"),
            format!("10.0.0.1:{port}"),
        ] {
            let r = request(a, route, Some(&evil), auth.as_slice());
            assert_eq!(r.status, 421, "{route} with Host {evil}: {}", r.body);
            assert!(r.body.contains("allowed_hosts"), "{}", r.body);
        }
    }
    // An absolute-form target naming another host is the same attack.
    let r = request(a, "http://evil.example/healthz", Some("localhost"), &[]);
    assert_eq!(r.status, 421, "{}", r.body);
    // A second Host header cannot smuggle one in.
    let r = request(a, "/healthz", Some("localhost"), &["Host: evil.example"]);
    assert!(r.status == 421 || r.status == 400, "{}", r.status);

    // Loopback names with any port (port forwards), the listen address, the allowed name.
    for ok in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("LOCALHOST:{}", port + 1),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "shadowdiff-admin.example".to_string(),
        format!("shadowdiff-admin.example:{port}"),
    ] {
        let r = request(a, "/api/v1/mismatches", Some(&ok), &[&right]);
        assert_eq!(r.status, 200, "Host {ok}: {}", r.body);
    }
    // No Host at all (an HTTP/1.0 health checker; never a browser) is answered.
    let mut s = TcpStream::connect(a).unwrap();
    write!(s, "GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut b = String::new();
    s.read_to_string(&mut b).unwrap();
    assert!(b.starts_with("HTTP/1.0 200"), "{b}");

    // Listening on 0.0.0.0, a probe dials the pod IP and names it in Host (Kubernetes' httpGet
    // probes): the address the connection arrived on passes, another port does not.
    if let Some(ip) = non_loopback_ip() {
        let pod = SocketAddr::new(ip, port);
        let r = request(pod, "/healthz", Some(&pod.to_string()), &[]);
        assert_eq!(r.status, 200, "probe on {pod}: {}", r.body);
        let r = request(pod, "/api/v1/summary", Some(&pod.to_string()), &[&right]);
        assert_eq!(r.status, 200, "{pod}: {}", r.body);
        let other = SocketAddr::new(ip, port.wrapping_add(1));
        let r = request(pod, "/healthz", Some(&other.to_string()), &[]);
        assert_eq!(r.status, 421, "Host {other} on {pod}");
    } else {
        eprintln!("no non-loopback address here: the pod-IP probe case is not exercised");
    }

    // The refusals are counted.
    let m = request(a, "/metrics", h, &[&right]);
    assert_eq!(m.status, 200);
    for reason in ["host", "no_token", "bad_token"] {
        let line = m
            .body
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "shadowdiff_admin_refused_total{{reason=\"{reason}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no refusal counter for {reason}:\n{}", m.body));
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }

    // `shadowdiff gate` with the token: from a file, from the environment; without it, a
    // clear error (exit 2). No traffic yet, so the verdict is insufficient data (exit 3).
    let url = format!("http://localhost:{port}");
    let tf = token_file.to_str().unwrap();
    let o = run(
        dir.path(),
        &["gate", "--url", &url, "--token-file", tf],
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("gate: insufficient_data"),
        "{}",
        text(&o)
    );
    let o = run(
        dir.path(),
        &["gate", "--url", &format!("http://{a}"), "--json"],
        &[("SHADOWDIFF_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = run(dir.path(), &["gate", "--url", &url], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("answered 401: the admin API wants a bearer token: give --token-file"),
        "{}",
        text(&o)
    );
    let wrong = write_token(dir.path(), "wrong", "not-the-admin-token-at-all");
    let o = run(
        dir.path(),
        &[
            "gate",
            "--url",
            &url,
            "--token-file",
            wrong.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused the token"),
        "{}",
        text(&o)
    );

    // The token never reaches the logs (debug level included), and logs written to a pipe
    // carry no ANSI colour codes.
    let log = sd.log();
    assert!(
        log.contains("admin API"),
        "the sidecar logged its admin address:\n{log}"
    );
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    assert!(
        !log.contains("s3cret"),
        "part of the token is in the log:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a piped log:\n{log:?}"
    );
}

#[test]
fn a_loopback_admin_without_a_token_still_refuses_foreign_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = proxy_config(dir.path(), &format!("admin: 127.0.0.1:{port}\n"));
    let sd = start(
        dir.path(),
        &["proxy", "--config", cfg.to_str().unwrap()],
        port,
    );
    let a = sd.admin;
    // The operator's own browser and tools: no token configured, so none needed.
    for ok in [a.to_string(), format!("localhost:{port}")] {
        let r = request(a, "/api/v1/mismatches", Some(&ok), &[]);
        assert_eq!(r.status, 200, "Host {ok}: {}", r.body);
    }
    // The rebinding page: same socket, its own name in Host.
    let r = request(
        a,
        "/api/v1/mismatches",
        Some(&format!("evil.example:{port}")),
        &[],
    );
    assert_eq!(r.status, 421, "{}", r.body);
    let r = request(a, "/metrics", Some("attacker.example"), &[]);
    assert_eq!(r.status, 421, "{}", r.body);
    // `gate` works as before, no token needed.
    let o = run(dir.path(), &["gate", "--url", &format!("http://{a}")], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn the_aggregator_serves_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No broker runs: the consumer keeps retrying in the background while the admin server
    // answers, which is all this test looks at.
    let brokers = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("agg.yaml");
    std::fs::write(&cfg, format!("admin: 0.0.0.0:{port}\n")).unwrap();
    let o = run(
        dir.path(),
        &[
            "aggregate",
            "--brokers",
            &brokers,
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a loopback address"),
        "{}",
        text(&o)
    );
    // `--admin` on a non-loopback address without a token, no config file: refused too.
    let o = run(
        dir.path(),
        &[
            "aggregate",
            "--brokers",
            &brokers,
            "--admin",
            &format!("0.0.0.0:{port}"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(64), "{}", text(&o));

    let token_file = write_token(dir.path(), "admin-token", TOKEN);
    std::fs::write(
        &cfg,
        format!(
            "admin: {{listen: 0.0.0.0:{port}, token_file: {}}}\n",
            token_file.display()
        ),
    )
    .unwrap();
    let agg = start(
        dir.path(),
        &[
            "aggregate",
            "--brokers",
            &brokers,
            "--config",
            cfg.to_str().unwrap(),
        ],
        port,
    );
    let a = agg.admin;
    let h = a.to_string();
    assert_eq!(request(a, "/api/v1/summary", Some(&h), &[]).status, 401);
    assert_eq!(
        request(
            a,
            "/api/v1/summary",
            Some(&h),
            &[&bearer("wrong-token-wrong-token")]
        )
        .status,
        401
    );
    let r = request(a, "/api/v1/summary", Some(&h), &[&bearer(TOKEN)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(request(a, "/healthz", Some(&h), &[]).status, 200);
    assert_eq!(
        request(a, "/healthz", Some("evil.example"), &[]).status,
        421
    );
    assert!(!agg.log().contains(TOKEN));
}
