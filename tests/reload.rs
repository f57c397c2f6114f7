//! Hot reload against the real binary (issue 14): real files, a real `kill -HUP`.
//!
//! - SIGHUP applies a good change (the next exchange is judged by the new rules) and refuses a
//!   bad one, keeping the old rules, with the problem's file and line in the log;
//! - a Kubernetes ConfigMap-style swap of the `..data` symlink is picked up without a signal;
//! - a config file change reloads sampling and the gate's threshold, and warns about
//!   restart-only parts;
//! - SIGHUP never stops the process: a burst of them, and one with the config file gone;
//! - a value newly added to `redact:` is hidden after SIGHUP everywhere it was published: new
//!   events (the API's mismatch feed), recordings (`record:`) and acknowledgements;
//! - `shadowdiff aggregate` reloads its gate thresholds on SIGHUP, keeps them on a bad file, and
//!   counts both.
//!
//! The candidate's answer differs from the primary's only in `/ts`, so a rule ignoring `/ts`
//! turns a mismatch into a match: what the verdict counts in `/metrics` show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{BIN, Process, http_get, http_get_as, http_request};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const STRICT: &str = "version: 1\nrules: []\n";
const IGNORE_TS: &str = "version: 1\nrules:\n  - match: \"*\"\n    ignore: [\"/ts\"]\n";
/// An unknown key at line 4.
const BAD: &str = "version: 1\nrules:\n  - match: \"*\"\n    ignor: [\"/ts\"]\n";

struct Setup {
    dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    _primary: common::Backend,
    _candidate: common::Backend,
    proxy: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    /// The admin token, when the admin API wants one (`admin.token_file`).
    token: Option<&'static str>,
}

impl Setup {
    /// A config whose `rules:` is `rules` (relative to the temporary folder) and `extra` lines.
    fn new(rules: &str, extra: &str) -> Setup {
        Setup::with_bodies(
            r#"{"v":1,"ts":"a"}"#,
            r#"{"v":1,"ts":"b"}"#,
            None,
            rules,
            extra,
        )
    }

    /// [`Setup::new`] with the primary's and the candidate's JSON answers.
    fn with_bodies(
        primary: &'static str,
        candidate: &'static str,
        token: Option<&'static str>,
        rules: &str,
        extra: &str,
    ) -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let primary = rt.block_on(common::json_backend(primary));
        let candidate = rt.block_on(common::json_backend(candidate));
        let dir = tempfile::tempdir().unwrap();
        let proxy = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let config = dir.path().join("shadowdiff.yaml");
        let s = Setup {
            _rt: rt,
            proxy,
            admin,
            config,
            _primary: primary,
            _candidate: candidate,
            dir,
            token,
        };
        if let Some(t) = token {
            std::fs::write(s.path("admin-token"), t).unwrap();
        }
        s.write_config(rules, extra);
        s
    }

    /// Writes the config file in one step ([`replace`]): the folder is watched, and a reload
    /// must never read it half written.
    fn write_config(&self, rules: &str, extra: &str) {
        replace(
            &self.config,
            &format!(
                "listen: {}\nprimary: http://{}\ncandidate: http://{}\n\
                 admin: {{listen: \"{}\"{}}}\nrules: {rules}\n\
                 sinks: {{file: {{path: events.jsonl}}}}\n{extra}",
                self.proxy,
                self._primary.addr,
                self._candidate.addr,
                self.admin,
                if self.token.is_some() {
                    ", token_file: admin-token"
                } else {
                    ""
                }
            ),
        );
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn start(&self) -> Process {
        let mut cmd = Command::new(BIN);
        cmd.args(["proxy", "--config", self.config.to_str().unwrap()]);
        let mut p = Process::start(cmd, self.dir.path(), self.admin);
        p.token = self.token.map(str::to_string);
        p
    }

    /// One request through the proxy; waits until its verdict is counted (`verdict`) or it is
    /// skipped (`verdict` = None).
    fn exchange(&self, p: &mut Process, verdict: &str) {
        let before = verdicts(p, verdict);
        assert_eq!(http_get(self.proxy, "/x").unwrap().status, 200);
        wait_until(&format!("a {verdict} counted"), p, |p| {
            verdicts(p, verdict) > before
        });
    }
}

fn verdicts(p: &Process, verdict: &str) -> f64 {
    p.metric(
        "shadowdiff_exchanges_total",
        &[("endpoint", "GET /x"), ("verdict", verdict)],
    )
}

fn reloads(p: &Process, outcome: &str) -> f64 {
    p.metric("shadowdiff_rules_reload_total", &[("outcome", outcome)])
}

/// Polls `cond` every 10 ms; fails with the log after 30 s or when the process has died.
fn wait_until(what: &str, p: &mut Process, mut cond: impl FnMut(&mut Process) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond(p) {
        assert!(
            p.running(),
            "the process died waiting for {what}:\n{}",
            p.log()
        );
        assert!(
            Instant::now() < deadline,
            "no {what} within 30 s:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ready(p: &Process) -> bool {
    http_get(p.admin, "/readyz").is_some_and(|a| a.status == 200)
}

/// Replaces a file's content in one step (as editors and `kubectl cp` do: write, then rename).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn sighup_applies_a_good_change_and_keeps_the_old_rules_on_a_bad_one() {
    // The rules file is a link to a file in an unwatched folder: editing it there is a change
    // no watch sees, so only the SIGHUP can have applied it.
    let s = Setup::new("rules.yaml", "");
    std::fs::create_dir(s.path("elsewhere")).unwrap();
    let real = s.path("elsewhere/rules.yaml");
    std::fs::write(&real, STRICT).unwrap();
    std::os::unix::fs::symlink(&real, s.path("rules.yaml")).unwrap();
    let mut p = s.start();
    s.exchange(&mut p, "mismatch");

    std::fs::write(&real, IGNORE_TS).unwrap();
    p.signal("HUP");
    wait_until("a reload", &mut p, |p| reloads(p, "ok") == 1.0);
    s.exchange(&mut p, "match");
    assert!(p.log().contains("trigger=\"SIGHUP\""), "{}", p.log());

    std::fs::write(&real, BAD).unwrap();
    p.signal("HUP");
    wait_until("a refused reload", &mut p, |p| reloads(p, "error") == 1.0);
    let log = p.log();
    assert!(
        log.contains("rules.yaml:4") && log.contains("ignor"),
        "the problem's file, line and key are logged:\n{log}"
    );
    // The old rules stay: `/ts` is still ignored; readiness is untouched.
    s.exchange(&mut p, "match");
    assert_eq!(verdicts(&p, "mismatch"), 1.0);
    assert_eq!(reloads(&p, "ok"), 1.0);
    assert!(ready(&p));
    assert!(p.running());
}

#[test]
fn a_configmap_symlink_swap_is_picked_up_without_a_signal() {
    // The layout the kubelet makes for a ConfigMap volume: the keys are links through `..data`,
    // a link to a timestamped folder, and an update swaps `..data` by a rename.
    let s = Setup::new("rules/", "");
    let rules = s.path("rules");
    std::fs::create_dir_all(rules.join("..2026_12_03_10_00_00.1")).unwrap();
    std::fs::write(rules.join("..2026_12_03_10_00_00.1/orders.yaml"), STRICT).unwrap();
    std::os::unix::fs::symlink("..2026_12_03_10_00_00.1", rules.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/orders.yaml", rules.join("orders.yaml")).unwrap();
    let mut p = s.start();
    s.exchange(&mut p, "mismatch");

    std::fs::create_dir(rules.join("..2026_12_03_10_05_00.2")).unwrap();
    std::fs::write(rules.join("..2026_12_03_10_05_00.2/orders.yaml"), IGNORE_TS).unwrap();
    std::os::unix::fs::symlink("..2026_12_03_10_05_00.2", rules.join("..data_tmp")).unwrap();
    std::fs::rename(rules.join("..data_tmp"), rules.join("..data")).unwrap();
    std::fs::remove_dir_all(rules.join("..2026_12_03_10_00_00.1")).unwrap();

    wait_until("a reload after the swap", &mut p, |p| {
        reloads(p, "ok") >= 1.0
    });
    s.exchange(&mut p, "match");
    assert_eq!(reloads(&p, "error"), 0.0);
    assert!(p.log().contains("trigger=\"file change\""), "{}", p.log());
}

#[test]
fn a_config_change_reloads_sampling_and_names_restart_only_parts() {
    let s = Setup::new("rules.yaml", "");
    std::fs::write(s.path("rules.yaml"), STRICT).unwrap();
    let mut p = s.start();
    s.exchange(&mut p, "mismatch");

    // Sampling to nothing (reloadable) and a new idle timeout (restart-only).
    replace(
        &s.config,
        &(std::fs::read_to_string(&s.config).unwrap()
            + "shadow: {sample: 0}\nlimits: {idle_timeout: 30s}\ngate: {max_divergence: 0.25}\n"),
    );
    wait_until("a reload after the config change", &mut p, |p| {
        reloads(p, "ok") >= 1.0
    });
    s.exchange(&mut p, "skipped");
    assert_eq!(
        p.metric(
            "shadowdiff_shadow_skipped_total",
            &[("reason", "sampled_out")]
        ),
        1.0
    );
    // The gate's default threshold reloaded too.
    let gate = http_get(s.admin, "/api/v1/gate").unwrap().body;
    assert!(gate.contains("\"max_divergence\":0.25"), "{gate}");
    let log = p.log();
    assert!(
        log.contains("applied only at a restart") && log.contains("limits"),
        "{log}"
    );
}

#[test]
fn sighup_is_never_fatal() {
    let s = Setup::new("rules.yaml", "");
    std::fs::write(s.path("rules.yaml"), STRICT).unwrap();
    let mut p = s.start();
    // A burst: reloads coalesce, none stops the process.
    for _ in 0..20 {
        p.signal("HUP");
    }
    wait_until("a reload", &mut p, |p| reloads(p, "ok") >= 1.0);
    s.exchange(&mut p, "mismatch");
    // With the config file gone, a SIGHUP is a refused reload, not an exit.
    std::fs::remove_file(&s.config).unwrap();
    p.signal("HUP");
    wait_until("a refused reload", &mut p, |p| reloads(p, "error") >= 1.0);
    assert!(ready(&p));
    s.exchange(&mut p, "mismatch");
    assert!(p.running(), "{}", p.log());
}

/// The events of `/api/v1/mismatches`, each as its JSON text, by id.
fn published_events(p: &Process) -> std::collections::BTreeMap<String, String> {
    let a = http_get_as(p.admin, "/api/v1/mismatches?limit=1000", p.token.as_deref()).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let list = v
        .as_object()
        .and_then(|o| o.values().find_map(|x| x.as_array()))
        .unwrap_or_else(|| panic!("no event list in {v}"));
    list.iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e.to_string()))
        .collect()
}

#[test]
fn sighup_hides_a_newly_redacted_value_in_events_recordings_and_acknowledgements() {
    const PRIMARY_SECRET: &str = "tok-PRIMARY-7f3a";
    const CANDIDATE_SECRET: &str = "tok-CANDIDATE-9c1e";
    const MAIL: &str = "ann.lee@example.com";
    // Nothing hidden at start: no path, and the detectors (e-mail among them) off.
    let record = "record: {path: rec.jsonl, sample: 1}\n";
    let open = format!("{record}redact: {{patterns: []}}\n");
    let s = Setup::with_bodies(
        r#"{"v":1,"token":"tok-PRIMARY-7f3a"}"#,
        r#"{"v":1,"token":"tok-CANDIDATE-9c1e"}"#,
        Some("reload-test-admin-token"),
        "rules.yaml",
        &open,
    );
    std::fs::write(s.path("rules.yaml"), STRICT).unwrap();
    let mut p = s.start();
    s.exchange(&mut p, "mismatch");
    // Before the change the value is published: what the checks below see is real.
    let before = published_events(&p);
    assert!(
        before.values().any(|e| e.contains(CANDIDATE_SECRET)),
        "{before:?}"
    );
    let recordings = || std::fs::read_to_string(s.path("rec.jsonl")).unwrap_or_default();
    wait_until("the first recording", &mut p, |_| {
        recordings().lines().count() == 1
    });
    assert!(recordings().contains(PRIMARY_SECRET));

    // `/token` and e-mail addresses become secrets; SIGHUP.
    s.write_config(
        "rules.yaml",
        &format!("{record}redact: {{paths: [\"/token\"], patterns: [email]}}\n"),
    );
    p.signal("HUP");
    // The folder is watched too: the file change and the SIGHUP may each reload.
    wait_until("a reload", &mut p, |p| reloads(p, "ok") >= 1.0);
    assert_eq!(reloads(&p, "error"), 0.0);

    // New events hide it (the mismatch feed of the API, which the UI shows).
    s.exchange(&mut p, "mismatch");
    let after = published_events(&p);
    let new: Vec<&String> = after
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .map(|(_, e)| e)
        .collect();
    assert_eq!(new.len(), 1, "{after:?}");
    assert!(
        !new[0].contains(PRIMARY_SECRET) && !new[0].contains(CANDIDATE_SECRET),
        "a new event still shows the value: {}",
        new[0]
    );
    // New recordings hide it.
    wait_until("the second recording", &mut p, |_| {
        recordings().lines().count() == 2
    });
    let second = recordings().lines().nth(1).unwrap().to_string();
    assert!(!second.contains(PRIMARY_SECRET), "{second}");

    // An acknowledgement is redacted with the reloaded `redact:` too.
    let t = p.token.as_deref();
    let signatures = http_get_as(s.admin, "/api/v1/signatures", t).unwrap().body;
    let v: serde_json::Value = serde_json::from_str(&signatures).unwrap();
    let sig = v["signatures"][0]["signature"]
        .as_str()
        .unwrap_or_else(|| panic!("no signature in {v}"));
    let ack = serde_json::json!({"signature": sig, "by": "qa", "reason": format!("ask {MAIL}")});
    let a = http_request(
        s.admin,
        "POST",
        "/api/v1/acknowledgements",
        t,
        Some(&ack.to_string()),
    )
    .unwrap();
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(!a.body.contains(MAIL), "the answer: {}", a.body);
    let list = http_get_as(s.admin, "/api/v1/acknowledgements", t)
        .unwrap()
        .body;
    assert!(!list.contains(MAIL), "the list: {list}");
    assert!(list.contains("<redacted"), "{list}");
}

#[test]
fn sighup_reloads_the_aggregators_gate_thresholds_and_keeps_them_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let admin = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    // The config is a link to a file in an unwatched folder: editing it there is a change no
    // watch sees, so only the SIGHUP can have applied it.
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    let config = dir.path().join("elsewhere/aggregate.yaml");
    // No broker answers on port 1: the fleet view still serves its API (with no data).
    let file = |gate: &str| format!("sinks: {{kafka: {{brokers: \"127.0.0.1:1\"}}}}\n{gate}");
    std::fs::write(
        &config,
        file("gate: {max_divergence: 0.05, min_samples: 100}\n"),
    )
    .unwrap();
    let link = dir.path().join("aggregate.yaml");
    std::os::unix::fs::symlink(&config, &link).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["aggregate", "--config", link.to_str().unwrap()])
        .args(["--admin", &admin.to_string()]);
    let mut p = Process::start(cmd, dir.path(), admin);
    let gate = || http_get(admin, "/api/v1/gate").unwrap().body;
    assert!(gate().contains("\"max_divergence\":0.05"), "{}", gate());

    std::fs::write(
        &config,
        file("gate: {max_divergence: 0.25, min_samples: 7}\n"),
    )
    .unwrap();
    p.signal("HUP");
    wait_until("a reload", &mut p, |p| reloads(p, "ok") >= 1.0);
    let g = gate();
    assert!(g.contains("\"max_divergence\":0.25"), "{g}");
    assert!(g.contains("\"min_samples\":7"), "{g}");
    assert!(p.log().contains("trigger=\"SIGHUP\""), "{}", p.log());

    // A bad threshold at line 2: refused with its line, the running thresholds stay.
    std::fs::write(&config, file("gate: {max_divergence: 7}\n")).unwrap();
    p.signal("HUP");
    wait_until("a refused reload", &mut p, |p| reloads(p, "error") >= 1.0);
    let log = p.log();
    assert!(log.contains("aggregate.yaml:2"), "{log}");
    let g = gate();
    assert!(g.contains("\"max_divergence\":0.25"), "{g}");
    assert!(p.running(), "{log}");
}
