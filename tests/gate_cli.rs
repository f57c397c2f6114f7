//! `shadowdiff gate` as a user runs it: the real binary against an admin server started here on
//! 127.0.0.1:0, checking exit codes 0 (pass), 1 (fail), 3 (insufficient data) and 2 (error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "admin_common/mod.rs"]
mod common;

use common::{Feeder, Server};
use shadowdiff::admin::AdminState;
use shadowdiff::compare::VerdictKind;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// GET /ok: 0/1000 divergent (upper bound 0.38% ≤ 1%: pass).
/// GET /bad: 100/1000 (lower bound 8.3% > 1%: fail).
/// GET /edge: 10/1000 = exactly 1%: enough samples, but the interval straddles 1%.
/// GET /close: 3/1000: Wilson passes it (upper 0.88%), the sequential gate not yet.
/// GET /broken: 142/142: fails at once with --min-samples-for pass.
fn server() -> Server {
    let clock = common::clock();
    let stats = common::stats(&clock);
    let f = Feeder::new(stats.clone());
    f.many(1000, "GET /ok", VerdictKind::Match);
    f.many(900, "GET /bad", VerdictKind::Match);
    f.many(100, "GET /bad", VerdictKind::Mismatch);
    f.many(990, "GET /edge", VerdictKind::Match);
    f.many(10, "GET /edge", VerdictKind::Mismatch);
    f.many(997, "GET /close", VerdictKind::Match);
    f.many(3, "GET /close", VerdictKind::Mismatch);
    f.many(142, "GET /broken", VerdictKind::Mismatch);
    Server::start(AdminState::new(stats, Arc::new(AtomicBool::new(true))))
}

fn gate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .arg("gate")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn exit_codes_follow_the_verdict() {
    let srv = server();
    let url = srv.url();
    let (code, out, err) = gate(&[
        "--url",
        &url,
        "--endpoint",
        "GET /ok",
        "--max-divergence",
        "1%",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("GET /ok") && out.contains("gate: pass"),
        "{out}"
    );
    let (code, out, _) = gate(&["--url", &url, "--endpoint", "GET /bad"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fail"), "{out}");
    let (code, out, _) = gate(&[
        "--url",
        &url,
        "--endpoint",
        "GET /edge",
        "--max-divergence",
        "0.01",
        "--min-samples",
        "500",
    ]);
    assert_eq!(code, 3, "straddles: {out}");
    assert!(out.contains("insufficient_data"), "{out}");
    // Not enough samples for a clearly passing endpoint.
    let (code, _, _) = gate(&[
        "--url",
        &url,
        "--endpoint",
        "GET /ok",
        "--min-samples",
        "5000",
    ]);
    assert_eq!(code, 3);
    // All endpoints: the worst (fail) wins; the table lists each endpoint and the pool.
    let (code, out, _) = gate(&["--url", &url, "--window", "15m"]);
    assert_eq!(code, 1, "{out}");
    for e in ["GET /ok", "GET /bad", "GET /edge", "(all)"] {
        assert!(out.contains(e), "{e} missing from\n{out}");
    }
    // The method: sequential by default (and said so), Wilson on request.
    let (code, out, _) = gate(&["--url", &url, "--endpoint", "GET /close"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("sequential: anytime-valid"), "{out}");
    let (code, out, _) = gate(&[
        "--url",
        &url,
        "--endpoint",
        "GET /close",
        "--method",
        "wilson",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("wilson: fixed-sample"), "{out}");
    // min_samples for pass only: overwhelming evidence fails before min_samples.
    let (code, _, _) = gate(&["--url", &url, "--endpoint", "GET /broken"]);
    assert_eq!(code, 3);
    let (code, out, _) = gate(&[
        "--url",
        &url,
        "--endpoint",
        "GET /broken",
        "--min-samples-for",
        "pass",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("min samples 500 for pass"), "{out}");
    // --json prints the server's report.
    let (code, out, _) = gate(&["--url", &url, "--endpoint", "GET /ok", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["samples"], 1000);
}

#[test]
fn errors_exit_2_with_a_clear_message() {
    let srv = server();
    // Nothing listens on a port we bound and released.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = gate(&["--url", &format!("http://{free}")]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    // The server refuses a window longer than it keeps: its message is shown.
    let (code, _, err) = gate(&["--url", &srv.url(), "--window", "2h"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("400") && err.contains("longer than the history kept"),
        "{err}"
    );
    // Something that is not the admin API.
    let (code, _, err) = gate(&["--url", &format!("{}/healthz", srv.url())]);
    assert_eq!(code, 2);
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = gate(&["--url", "localhost:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("http://"), "{err}");
    let (code, _, err) = gate(&["--url", &srv.url(), "--max-divergence", "150%"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid rate"), "{err}");
}
