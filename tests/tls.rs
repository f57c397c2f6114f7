//! TLS to upstreams against a server nobody here wrote: nginx (Debian) serving https with
//! certificates made by the openssl CLI at test time — a CA, a server certificate (and an
//! expired one), a client certificate for mTLS, and a second CA that signed none of them.
//! Also shadow rewrites (`shadow.candidate`), checked in nginx's own access log.
//! nginx and openssl come from `scripts/install-test-deps.sh`; without them the test skips
//! with a message, unless `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Request;
use shadowdiff::compare::VerdictKind;
use shadowdiff::config::{ProxyConfig, TlsConfig, Upstream};
use std::path::{Path, PathBuf};
use std::process::Command;

const BODY: &str = r#"{"v":1}"#;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a key with its CSR, in `dir`.
fn make_certs(d: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        let (key, pem, subj) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN={ca}"),
        );
        a.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        openssl(d, &a);
    }
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let mut a = vec!["req"];
        a.extend(ec);
        let (key, csr, ext, pem) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.ext"),
            format!("{who}.pem"),
        );
        let subj = format!("/CN={who}");
        a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(d, &a);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
    // An expired server certificate: `openssl ca` takes explicit dates, `x509 -req` does not.
    std::fs::create_dir_all(d.join("db")).unwrap();
    std::fs::write(d.join("db/index.txt"), "").unwrap();
    std::fs::write(d.join("db/serial"), "01\n").unwrap();
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = db/index.txt\nnew_certs_dir = db\nserial = db/serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "server.csr",
            "-out",
            "expired.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-extfile",
            "server.ext",
            "-notext",
        ],
    );
}

/// nginx with a plain primary and three https servers: `good` (valid certificate), `expired`,
/// and `mtls` (wants a client certificate from the CA). Every one answers `BODY`.
struct Nginx {
    _nginx: KillOnDrop,
    dir: tempfile::TempDir,
    plain: u16,
    good: u16,
    expired: u16,
    mtls: u16,
}

impl Nginx {
    fn start(bin: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_certs(d);
        let (plain, good, expired, mtls) = (free_port(), free_port(), free_port(), free_port());
        let p = d.display();
        let answer =
            format!("default_type application/json; location / {{ return 200 '{BODY}'; }}");
        let conf = format!(
            r#"worker_processes 1;
daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {p}/tmp-body;
  proxy_temp_path {p}/tmp-proxy;
  fastcgi_temp_path {p}/tmp-fastcgi;
  uwsgi_temp_path {p}/tmp-uwsgi;
  scgi_temp_path {p}/tmp-scgi;
  log_format tls '$server_port $connection $ssl_session_reused $ssl_protocol $request_uri $http_x_tenant $status';
  access_log {p}/access.log tls;
  ssl_certificate_key {p}/server.key;
  # TLS 1.3 (nginx 1.22 offers up to 1.2 by default): its session tickets come after the
  # handshake, on a connection the shadow client pools.
  ssl_protocols TLSv1.2 TLSv1.3;
  server {{ listen 127.0.0.1:{plain}; {answer} }}
  server {{ listen 127.0.0.1:{good} ssl; ssl_certificate {p}/server.pem; {answer} }}
  server {{ listen 127.0.0.1:{expired} ssl; ssl_certificate {p}/expired.pem; {answer} }}
  server {{
    listen 127.0.0.1:{mtls} ssl;
    ssl_certificate {p}/server.pem;
    ssl_verify_client on;
    ssl_client_certificate {p}/ca.pem;
    {answer}
  }}
}}
"#
        );
        let _nginx = start_nginx(bin, d, &conf, &[plain, good, expired, mtls]);
        Nginx {
            _nginx,
            dir,
            plain,
            good,
            expired,
            mtls,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Access-log lines of one server: (connection, session reused, protocol, uri, x-tenant, status).
    fn log(&self, port: u16) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.file("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f[0] == port.to_string())
            .map(|f| f[1..].to_vec())
            .collect()
    }

    fn https(port: u16) -> Upstream {
        Upstream::parse(&format!("https://127.0.0.1:{port}")).unwrap()
    }

    fn plain(&self) -> Upstream {
        Upstream::parse(&format!("http://127.0.0.1:{}", self.plain)).unwrap()
    }

    fn trust(&self, ca: &str) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.file(ca)),
            ..TlsConfig::default()
        }
    }
}

fn config(primary: Upstream, candidate: Upstream) -> ProxyConfig {
    let mut c = ProxyConfig::new(primary, candidate);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// Sends `n` GETs of `path` one after the other through a proxy started with `cfg`; each client
/// answer must be nginx's. Returns what the sink saw.
async fn run(cfg: ProxyConfig, path: &str, n: usize) -> Vec<Seen> {
    let sink = TestSink::new();
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    for i in 1..=n {
        let req = Request::get(proxy.url(path))
            .header("x-tenant", "acme")
            .body(full(""))
            .unwrap();
        let (parts, body) = send(&client, req).await;
        assert_eq!((parts.status.as_u16(), &body[..]), (200, BODY.as_bytes()));
        sink.wait_for(i).await;
    }
    proxy.shutdown().await;
    sink.seen()
}

fn kinds(seen: &[Seen]) -> Vec<VerdictKind> {
    seen.iter().map(|s| s.kind).collect()
}

fn nginx() -> Option<Nginx> {
    let bin = installed("nginx", &[PathBuf::from("/usr/sbin")], "nginx")?;
    installed("openssl", &[PathBuf::from("/usr/bin")], "openssl")?;
    Some(Nginx::start(&bin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_candidate_matches_on_pooled_connections_and_resumes_sessions() {
    let Some(ng) = nginx() else { return };
    let mut cfg = config(ng.plain(), Nginx::https(ng.good));
    cfg.tls.candidate = Some(ng.trust("ca.pem"));
    cfg.shadow.max_in_flight = 8;
    let sink = TestSink::new();
    let proxy = start(cfg, sink.clone()).await;
    let client = h1_client();
    // One at a time: one connection, kept and reused.
    for i in 1..=3 {
        let (parts, body) = get(&client, &proxy.url("/one")).await;
        assert_eq!((parts.status.as_u16(), &body[..]), (200, BODY.as_bytes()));
        sink.wait_for(i).await;
    }
    // Then four at once: the kept connection and three new ones, which resume the session.
    let url = proxy.url("/many");
    let all = futures_util::future::join_all((0..4).map(|_| get(&client, &url)));
    for (parts, body) in all.await {
        assert_eq!((parts.status.as_u16(), &body[..]), (200, BODY.as_bytes()));
    }
    let seen = sink.wait_for(7).await;
    proxy.shutdown().await;
    assert_eq!(kinds(&seen), [VerdictKind::Match; 7], "{seen:#?}");
    let log = ng.log(ng.good);
    assert_eq!(log.len(), 7, "{log:?}");
    let first = &log[0][0];
    assert!(
        log[..3].iter().all(|l| &l[0] == first && l[2] == "TLSv1.3"),
        "pooled: {log:?}"
    );
    let new: Vec<_> = log[3..].iter().filter(|l| &l[0] != first).collect();
    assert!(
        !new.is_empty() && new.iter().any(|l| l[1] == "r"),
        "resumed: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_expired_certificate_and_wrong_name_are_candidate_errors_with_the_reason() {
    let Some(ng) = nginx() else { return };
    let cases = [
        (ng.good, ng.trust("other-ca.pem"), None, "UnknownIssuer"),
        (ng.expired, ng.trust("ca.pem"), None, "expired"),
        (
            ng.good,
            ng.trust("ca.pem"),
            Some("wrong.example"),
            "not valid for name",
        ),
    ];
    for (port, mut tls, name, reason) in cases {
        tls.server_name = name.map(str::to_string);
        let mut cfg = config(ng.plain(), Nginx::https(port));
        cfg.tls.candidate = Some(tls);
        let seen = run(cfg, "/x", 2).await;
        assert_eq!(kinds(&seen), [VerdictKind::CandidateError; 2], "{seen:#?}");
        let note = seen[0].notes.join(" ");
        assert!(
            note.contains("TLS handshake with") && note.contains(reason),
            "{reason}: {note}"
        );
    }
    // Not one request reached nginx over a connection it would not be trusted on.
    assert!(ng.log(ng.good).is_empty() && ng.log(ng.expired).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_works_with_the_client_certificate_and_fails_cleanly_without() {
    let Some(ng) = nginx() else { return };
    let mut with = ng.trust("ca.pem");
    with.client_cert = Some(ng.file("client.pem"));
    with.client_key = Some(ng.file("client.key"));
    let mut cfg = config(ng.plain(), Nginx::https(ng.mtls));
    cfg.tls.candidate = Some(with);
    let seen = run(cfg, "/m", 2).await;
    assert_eq!(kinds(&seen), [VerdictKind::Match; 2], "{seen:#?}");

    // Without: nginx answers 400 "No required SSL certificate was sent" — a status difference
    // (nothing was served), and the client still gets the primary's answer.
    let mut cfg = config(ng.plain(), Nginx::https(ng.mtls));
    cfg.tls.candidate = Some(ng.trust("ca.pem"));
    let seen = run(cfg, "/m", 1).await;
    assert_eq!(kinds(&seen), [VerdictKind::Mismatch], "{seen:#?}");
    assert_eq!(
        seen[0].differences[0].kind,
        shadowdiff::compare::DiffKind::Status
    );
    let statuses: Vec<_> = ng.log(ng.mtls).iter().map(|l| l[5].clone()).collect();
    assert_eq!(statuses, ["200", "200", "400"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_over_https_and_a_failing_one_is_a_502() {
    let Some(ng) = nginx() else { return };
    let mut cfg = config(Nginx::https(ng.good), ng.plain());
    cfg.tls.primary = Some(ng.trust("ca.pem"));
    let seen = run(cfg, "/p", 2).await;
    assert_eq!(kinds(&seen), [VerdictKind::Match; 2], "{seen:#?}");
    assert_eq!(ng.log(ng.good).len(), 2);

    let mut cfg = config(Nginx::https(ng.expired), ng.plain());
    cfg.tls.primary = Some(ng.trust("ca.pem"));
    let proxy = start(cfg, TestSink::new()).await;
    let (parts, body) = get(&h1_client(), &proxy.url("/p")).await;
    assert_eq!(parts.status, 502);
    assert!(String::from_utf8_lossy(&body).contains("TLS handshake with 127.0.0.1 failed"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_rewrites_reach_the_candidate_only() {
    let Some(ng) = nginx() else { return };
    let mut cfg = config(ng.plain(), Nginx::https(ng.good));
    cfg.tls.candidate = Some(ng.trust("ca.pem"));
    cfg.shadow.candidate = serde_yaml_ng::from_str(
        r#"
path_prefix: /v2
rewrite:
  - {in: path, regex: "^/orders/(\\d+)$", replace: "/order/$1"}
  - {in: query, regex: "debug=1&?", replace: ""}
  - {in: header, name: x-tenant, regex: "^acme$", replace: "acme-staging"}
"#,
    )
    .unwrap();
    let seen = run(cfg, "/orders/42?debug=1&a=b", 1).await;
    assert_eq!(kinds(&seen), [VerdictKind::Match], "{seen:#?}");
    let shadow = &ng.log(ng.good)[0];
    assert_eq!(
        (shadow[3].as_str(), shadow[4].as_str()),
        ("/v2/order/42?a=b", "acme-staging")
    );
    let primary = &ng.log(ng.plain)[0];
    assert_eq!(
        (primary[3].as_str(), primary[4].as_str()),
        ("/orders/42?debug=1&a=b", "acme")
    );
}
