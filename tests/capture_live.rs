//! Live capture on `lo`, as root (CI runs as root): N requests at a steady rate to a local
//! server while `shadowdiff capture --interface lo` listens; the exchanges it reassembles ÷ N
//! must reach 99.9%. The capture process's CPU over the run is printed (see benches/README.md,
//! "Capture"); only the ratio is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Requests sent, and the rate (override with SHADOWDIFF_CAPTURE_N / _RPS).
fn load() -> (u64, u64) {
    let n = std::env::var("SHADOWDIFF_CAPTURE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    let rps = std::env::var("SHADOWDIFF_CAPTURE_RPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    (n, rps)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5): utime and stime, in clock ticks (fields start at 3 here).
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks / hz
}

fn complete_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("shadowdiff_capture_exchanges_total{outcome=\"complete\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_loopback_capture_reassembles_at_least_999_per_mille() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP: live capture needs root (CI runs as root)");
        return;
    }
    let backend = common::json_backend(r#"{"id":42,"items":[1,2,3],"note":"captured"}"#).await;
    let port = backend.addr.port();
    let admin = format!("127.0.0.1:{}", common::free_port());
    let summary = tempfile::NamedTempFile::new().unwrap();
    let bin =
        std::env::var("SHADOWDIFF_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_shadowdiff").into());
    let child = Command::new(bin)
        .args([
            "capture",
            "--interface",
            "lo",
            "--port",
            &port.to_string(),
            "--admin",
            &admin,
        ])
        .arg("--summary-json")
        .arg(summary.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Ready when `/readyz` answers 200: set once libpcap has opened the interface and the
    // filter is in place (the admin server answers before that; traffic sent then was lost).
    let client = common::h1_client();
    let url = format!("http://{admin}/metrics");
    let readyz = format!("http://{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = hyper::Request::get(&readyz).body(common::full("")).unwrap();
        if client
            .request(req)
            .await
            .is_ok_and(|r| r.status() == hyper::StatusCode::OK)
        {
            break;
        }
        assert!(Instant::now() < deadline, "capture did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (n, rps) = load();
    let workers = 8u64;
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = common::h1_client();
        let base = format!("http://127.0.0.1:{port}");
        tasks.push(tokio::spawn(async move {
            let per = n / workers + u64::from(w < n % workers);
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(workers as f64 / rps as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut ok = 0u64;
            for i in 0..per {
                tick.tick().await;
                let req = hyper::Request::get(format!("{base}/items/{w}-{i}?page=1"))
                    .body(common::full(""))
                    .unwrap();
                if let Ok(r) = client.request(req).await {
                    use http_body_util::BodyExt;
                    ok += u64::from(r.into_body().collect().await.is_ok());
                }
            }
            ok
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    let elapsed = t0.elapsed();
    assert_eq!(sent, n, "the server answered every request");
    // Wait (bounded) until the capture has seen them all, then stop it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut complete = 0;
    while Instant::now() < deadline {
        let req = hyper::Request::get(&url).body(common::full("")).unwrap();
        if let Ok(r) = client.request(req).await {
            use http_body_util::BodyExt;
            let body = r.into_body().collect().await.unwrap().to_bytes();
            complete = complete_in(&String::from_utf8_lossy(&body));
            if complete >= n {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds(pid) - cpu0;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let counts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary.path()).unwrap()).expect("summary json");
    let capture = &counts["capture"];
    let final_complete = capture["exchanges"]["complete"].as_u64().unwrap();
    let ratio = final_complete as f64 / n as f64;
    let cores = cpu / elapsed.as_secs_f64();
    println!(
        "live capture on lo: {final_complete}/{n} exchanges complete ({:.3}%), at {:.0} rps for {:.1} s; \
         capture process CPU {:.3} core ({cpu:.2} s); kernel received {}, dropped {}; \
         incomplete {}",
        100.0 * ratio,
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        cores,
        capture["packets"]["kernel_received"],
        capture["packets"]["kernel_dropped"],
        capture["exchanges"]["incomplete"],
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(complete >= n * 999 / 1000 || final_complete >= n * 999 / 1000);
    assert!(
        ratio >= 0.999,
        "only {final_complete} of {n} exchanges reassembled"
    );
}
