//! `shadowdiff capture --candidate` end to end with the real binary: the demo's traffic as
//! tcpdump saw it on `lo` (`sample-traffic/capture/demo-lo.pcap`, answered by the demo's legacy
//! build) is sent to a live candidate under the shadow policy and compared with the **captured**
//! answers — the demo's candidate build shows its planted changes, the legacy build matches —
//! and `--record` writes every exchange as a recording `replay` reads back. Also: a reader that
//! closes the pipe (`capture … | head`) is not a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{demo_service, fields, verdict};
use shadowdiff::demo::services::Build;
use std::path::Path;
use std::process::{Command, Stdio};

const PCAP: &str = "sample-traffic/capture/demo-lo.pcap";
const PORT: &str = "45003";

/// Runs `shadowdiff capture` on the demo capture with `args`; exit code, stdout, summary JSON.
fn capture(dir: &Path, args: &[&str]) -> (i32, String, serde_json::Value) {
    let summary = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["capture", "--pcap", PCAP, "--port", PORT])
        .args(["--config", "sample-traffic/replay-example.yaml"])
        .arg("--summary-json")
        .arg(&summary)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let s = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (out.status.code().unwrap(), format!("{stdout}\n{stderr}"), s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_answers_are_compared_with_the_candidates_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = demo_service(Build::Legacy).await;
    let candidate = demo_service(Build::Candidate).await;
    let rec = dir.path().join("captured.jsonl");
    let d = dir.path().to_path_buf();
    let (cand, rec2) = (candidate.clone(), rec.clone());
    let (code, out, s) = tokio::task::spawn_blocking(move || {
        capture(
            &d,
            &["--candidate", &cand, "--record", rec2.to_str().unwrap()],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    // Completeness and comparison in one summary: all 600 exchanges reassembled, each compared
    // (GETs: the shipped policy mirrors GET, HEAD, OPTIONS; the rest are skipped, counted).
    assert_eq!(s["capture"]["exchanges"]["complete"], 600, "{out}");
    let compared = verdict(&s, "match") + verdict(&s, "mismatch") + verdict(&s, "noise");
    assert!(compared > 300, "{compared} compared\n{out}");
    assert!(verdict(&s, "mismatch") > 0, "{out}");
    assert!(verdict(&s, "match") > 0, "{out}");
    let mut found = Vec::new();
    fields(&s, &mut found);
    for planted in ["/tax", "/loyalty_points", "/description"] {
        assert!(
            found.iter().any(|f| f == planted),
            "{planted}: {found:?}\n{out}"
        );
    }
    assert!(out.contains("== summary"), "{out}");
    // `--record`: every reassembled exchange, as a recording.
    let lines = std::fs::read_to_string(&rec).unwrap();
    assert_eq!(lines.lines().count(), 600);
    assert!(
        lines
            .lines()
            .all(|l| l.contains("\"shadowdiff.recording.v1\""))
    );
    assert!(lines.contains("\"source\":\"capture\""));

    // The legacy build as the candidate: what the capture saw is what it answers, so the
    // planted fields never appear and matches are `match`.
    let d = dir.path().to_path_buf();
    let (code, out, s) =
        tokio::task::spawn_blocking(move || capture(&d, &["--candidate", &legacy]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
    let mut found = Vec::new();
    fields(&s, &mut found);
    for planted in ["/tax", "/loyalty_points", "/description"] {
        assert!(!found.iter().any(|f| f == planted), "{planted}\n{out}");
    }
    assert!(verdict(&s, "match") > 300, "{out}");
    assert_eq!(verdict(&s, "candidate_error"), 0, "{out}");
}

/// `shadowdiff capture … | head`: the reader is gone before the report is written. Exit 0,
/// no panic message (print! panics on a broken pipe).
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["capture", "--pcap", PCAP, "--port", PORT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// `shadowdiff replay --traffic FILE.pcap --port N`: the capture reassembled as `capture` does,
/// each exchange replayed against the candidate and compared with the captured answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pcap_replays_against_the_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = demo_service(Build::Candidate).await;
    let summary = dir.path().join("s.json");
    let s2 = summary.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["replay", "--traffic", PCAP, "--port", PORT])
            .args(["--candidate", &candidate])
            .args(["--config", "sample-traffic/replay-example.yaml"])
            .arg("--summary-json")
            .arg(&s2)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("600 complete"), "{text}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(verdict(&s, "mismatch") > 0, "{text}");
    let mut found = Vec::new();
    fields(&s, &mut found);
    assert!(found.iter().any(|f| f == "/tax"), "{found:?}\n{text}");
}
