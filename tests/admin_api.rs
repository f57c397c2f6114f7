//! The admin API over a real socket: exact summary numbers for a controlled mix, gate verdicts,
//! window expiry, mismatches paging and filters, `/metrics` through a Prometheus parser, 400s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "admin_common/mod.rs"]
mod common;

use common::{Feeder, Server, diff, get, get_json};
use serde_json::{Value, json};
use shadowdiff::admin::{AdminState, MetricFamily, MetricsSource};
use shadowdiff::compare::{DiffKind, SkipReason, VerdictKind};
use shadowdiff::stats::wilson95;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const A: &str = "GET /a";
const B: &str = "GET /b";
const C: &str = "POST /c";

/// 700 match, 200 mismatch, 50 candidate_error, 30 skipped across three endpoints:
///
/// | endpoint | match | mismatch | candidate_error | skipped |
/// |---|---|---|---|---|
/// | GET /a  | 400 | 100 (/price value)                 | 20 | 10 sampled_out |
/// | GET /b  | 200 | 80 (/name value; 40 also /ts noise) | 20 | 10 shadow_queue_full |
/// | POST /c | 100 | 20 (@status)                        | 10 | 5 method_not_mirrored + 5 body_too_large |
///
/// Latency (µs): primary always 1000. A: candidate 1500 on match, 1200 on mismatch. B: 800 on
/// match, 1200 on mismatch (so deltas are −200 and +200). C: candidate 1000. Errors have no
/// candidate latency; skips have none at all.
fn controlled_mix(f: &Feeder) {
    use VerdictKind::*;
    let p = Some(1000);
    // Interleave the endpoints so event ids are not grouped by endpoint.
    for i in 0..400 {
        f.feed(A, Match, None, vec![], None, (p, Some(1500)));
        if i < 200 {
            f.feed(B, Match, None, vec![], None, (p, Some(800)));
        }
        if i < 100 {
            f.feed(C, Match, None, vec![], None, (p, Some(1000)));
            f.feed(
                A,
                Mismatch,
                None,
                vec![diff("/price", DiffKind::Value, false)],
                Some("sig-a"),
                (p, Some(1200)),
            );
        }
        if i < 80 {
            let mut d = vec![diff("/name", DiffKind::Value, false)];
            let sig = if i % 2 == 0 {
                d.push(diff("/ts", DiffKind::Value, true));
                "sig-b2"
            } else {
                "sig-b1"
            };
            f.feed(B, Mismatch, None, d, Some(sig), (p, Some(1200)));
        }
        if i < 20 {
            f.feed(
                C,
                Mismatch,
                None,
                vec![diff("@status", DiffKind::Status, false)],
                Some("sig-c"),
                (p, Some(1000)),
            );
            f.feed(A, CandidateError, None, vec![], Some("sig-err"), (p, None));
            f.feed(B, CandidateError, None, vec![], Some("sig-err"), (p, None));
        }
        if i < 10 {
            f.feed(C, CandidateError, None, vec![], Some("sig-err"), (p, None));
            f.feed(
                A,
                Skipped,
                Some(SkipReason::SampledOut),
                vec![],
                None,
                (None, None),
            );
            f.feed(
                B,
                Skipped,
                Some(SkipReason::ShadowQueueFull),
                vec![],
                None,
                (None, None),
            );
        }
        if i < 5 {
            f.feed(
                C,
                Skipped,
                Some(SkipReason::MethodNotMirrored),
                vec![],
                None,
                (None, None),
            );
            f.feed(
                C,
                Skipped,
                Some(SkipReason::BodyTooLarge),
                vec![],
                None,
                (None, None),
            );
        }
    }
}

fn divergence(k: u64, n: u64) -> Value {
    let (lo, hi) = wilson95(k, n);
    json!({"rate": k as f64 / n as f64, "divergent": k, "samples": n, "ci95": [lo, hi]})
}

fn verdicts(m: u64, mm: u64, ce: u64, sk: u64) -> Value {
    json!({"match": m, "mismatch": mm, "noise": 0, "candidate_error": ce, "skipped": sk})
}

fn setup() -> (Arc<shadowdiff::stats::ManualClock>, Feeder, Server) {
    let clock = common::clock();
    let stats = common::stats(&clock);
    let f = Feeder::new(stats.clone());
    controlled_mix(&f);
    let state = AdminState::new(stats, Arc::new(AtomicBool::new(false)));
    (clock, f, Server::start(state))
}

#[test]
fn summary_numbers_are_exact() {
    let (_clock, _f, srv) = setup();
    for window in ["15m", "all"] {
        let (code, s) = get_json(srv.addr, &format!("/api/v1/summary?window={window}"));
        assert_eq!(code, 200);
        assert_eq!(s["window"], window);
        let t = &s["totals"];
        assert_eq!(t["exchanges"], 980);
        assert_eq!(t["verdicts"], verdicts(700, 200, 50, 30));
        assert_eq!(
            t["skip_reasons"],
            json!({"sampled_out": 10, "shadow_queue_full": 10, "method_not_mirrored": 5, "body_too_large": 5})
        );
        // (200 + 50) / (980 − 30)
        assert_eq!(t["divergence"], divergence(250, 950));
        let eps = s["endpoints"].as_array().unwrap();
        let names: Vec<&str> = eps
            .iter()
            .map(|e| e["endpoint"].as_str().unwrap())
            .collect();
        assert_eq!(names, [A, B, C]);
        let (a, b, c) = (&eps[0], &eps[1], &eps[2]);
        assert_eq!(a["exchanges"], 530);
        assert_eq!(a["verdicts"], verdicts(400, 100, 20, 10));
        assert_eq!(a["skip_reasons"], json!({"sampled_out": 10}));
        assert_eq!(a["divergence"], divergence(120, 520));
        assert_eq!(b["verdicts"], verdicts(200, 80, 20, 10));
        assert_eq!(b["divergence"], divergence(100, 300));
        assert_eq!(c["verdicts"], verdicts(100, 20, 10, 10));
        assert_eq!(
            c["skip_reasons"],
            json!({"method_not_mirrored": 5, "body_too_large": 5})
        );
        assert_eq!(c["divergence"], divergence(30, 130));
        assert_eq!(
            a["top_fields"],
            json!([{"field": "/price", "kind": "value", "count": 100, "noise": 0}])
        );
        assert_eq!(
            b["top_fields"],
            json!([
                {"field": "/name", "kind": "value", "count": 80, "noise": 0},
                {"field": "/ts", "kind": "value", "count": 40, "noise": 40}
            ])
        );
        assert_eq!(
            c["top_fields"],
            json!([{"field": "@status", "kind": "status", "count": 20, "noise": 0}])
        );
        assert_eq!(
            t["top_fields"][0],
            json!({"field": "/price", "kind": "value", "count": 100, "noise": 0})
        );
        // Latency counts are exact in every window; values exact since start (3 digits: values
        // under 2048 µs are held at 1 µs resolution).
        assert_eq!(a["latency"]["primary"]["count"], 520);
        assert_eq!(a["latency"]["candidate"]["count"], 500);
        assert_eq!(a["latency"]["delta"]["count"], 500);
        assert_eq!(b["latency"]["delta"]["count"], 280);
        assert_eq!(t["latency"]["primary"]["count"], 950);
    }
    let (_, s) = get_json(srv.addr, "/api/v1/summary?window=all");
    let (a, b) = (&s["endpoints"][0]["latency"], &s["endpoints"][1]["latency"]);
    assert_eq!(
        a["primary"],
        json!({"count": 520, "p50_us": 1000, "p90_us": 1000, "p99_us": 1000, "max_us": 1000})
    );
    // A's candidate: 100 × 1200 then 400 × 1500.
    assert_eq!(
        a["candidate"],
        json!({"count": 500, "p50_us": 1500, "p90_us": 1500, "p99_us": 1500, "max_us": 1500})
    );
    assert_eq!(
        a["delta"],
        json!({"count": 500, "min_us": 200, "p50_us": 500, "p90_us": 500, "p99_us": 500, "max_us": 500})
    );
    // B's delta: 200 × −200 µs (candidate faster), 80 × +200 µs: the median is negative.
    assert_eq!(
        b["delta"],
        json!({"count": 280, "min_us": -200, "p50_us": -200, "p90_us": 200, "p99_us": 200, "max_us": 200})
    );
}

#[test]
fn window_expiry_over_the_api() {
    let (clock, f, srv) = setup();
    clock.advance(Duration::from_secs(16 * 60));
    f.many(3, A, VerdictKind::Match);
    let (_, s) = get_json(srv.addr, "/api/v1/summary?window=15m");
    assert_eq!(s["totals"]["exchanges"], 3);
    assert_eq!(s["totals"]["divergence"], divergence(0, 3));
    let (_, s) = get_json(srv.addr, "/api/v1/summary?window=all");
    assert_eq!(s["totals"]["exchanges"], 983);
    // The default window is the configured one (15m).
    let (_, s) = get_json(srv.addr, "/api/v1/summary");
    assert_eq!(s["window"], "15m");
    assert_eq!(s["totals"]["exchanges"], 3);
}

#[test]
fn gate_verdicts_via_api() {
    let (_clock, f, srv) = setup();
    // The mix diverges at 26%: fail, and every endpoint fails.
    let (code, g) = get_json(
        srv.addr,
        "/api/v1/gate?max_divergence=0.01&min_samples=100&window=15m",
    );
    assert_eq!(code, 200);
    assert_eq!(g["verdict"], "fail");
    assert_eq!(g["pool_verdict"], "fail");
    assert_eq!(g["samples"], 950);
    assert_eq!(g["divergent"], 250);
    assert_eq!(g["window"], "15m");
    assert_eq!(g["max_divergence"], 0.01);
    assert_eq!(g["min_samples"], 100);
    assert_eq!(g["min_samples_for"], "both");
    // Judged on the anytime-valid confidence sequence by default (docs/gate.md): its interval is
    // wider than Wilson's, which `method=wilson` still gives.
    assert_eq!(g["method"], "sequential");
    let (lo, hi) = shadowdiff::stats::Sequence::new(0.01).interval(250, 950);
    assert_eq!(g["ci95"], json!([lo, hi]));
    let (wlo, whi) = wilson95(250, 950);
    assert!(lo < wlo && hi > whi);
    assert_eq!(g["endpoints"].as_array().unwrap().len(), 3);
    let (_, w) = get_json(
        srv.addr,
        "/api/v1/gate?max_divergence=0.01&min_samples=100&window=15m&method=wilson",
    );
    assert_eq!(
        (&w["method"], &w["verdict"]),
        (&json!("wilson"), &json!("fail"))
    );
    assert_eq!(w["ci95"], json!([wlo, whi]));
    assert_eq!(
        w["endpoints"][0]["ci95"],
        json!(<[f64; 2]>::from(wilson95(120, 520)))
    );
    // Without a window the gate judges everything since start: the sample its guarantee holds
    // over.
    let (_, g) = get_json(srv.addr, "/api/v1/gate?min_samples=100");
    assert_eq!(g["window"], "all");
    // A lenient threshold passes: 26.3% ∈ [23.6%, 29.2%], all below 50%.
    let (_, g) = get_json(
        srv.addr,
        "/api/v1/gate?max_divergence=50%25&min_samples=100",
    );
    assert_eq!(g["verdict"], "pass");
    // A threshold inside the interval: enough samples, but it straddles.
    let (_, g) = get_json(
        srv.addr,
        &format!(
            "/api/v1/gate?max_divergence={}&min_samples=100&endpoint=GET%20%2Fa",
            120.0 / 520.0
        ),
    );
    assert_eq!(g["verdict"], "insufficient_data");
    assert_eq!(g["samples"], 520);
    // Too few samples.
    let (_, g) = get_json(srv.addr, "/api/v1/gate?max_divergence=0.5&min_samples=1000");
    assert_eq!(g["verdict"], "insufficient_data");
    // An endpoint with no data at all.
    let (_, g) = get_json(srv.addr, "/api/v1/gate?endpoint=GET%20%2Fnone");
    assert_eq!(g["verdict"], "insufficient_data");
    assert_eq!(g["samples"], 0);
    assert_eq!(g["divergence_rate"], Value::Null);
    drop(f);
}

#[test]
fn per_endpoint_thresholds_override_the_query() {
    let clock = common::clock();
    let stats = common::stats(&clock);
    let f = Feeder::new(stats.clone());
    f.many(1000, "GET /ok", VerdictKind::Match);
    f.many(700, "GET /noisy", VerdictKind::Match);
    f.many(300, "GET /noisy", VerdictKind::Mismatch);
    let mut state = AdminState::new(stats, Arc::new(AtomicBool::new(true)));
    let srv_strict = Server::start(state.clone());
    let mut gate = shadowdiff::stats::GateConfig::default();
    gate.endpoints.insert(
        "GET /noisy".into(),
        shadowdiff::stats::GateEndpointConfig {
            max_divergence: Some(0.5),
            min_samples: None,
        },
    );
    state.gate = Arc::new(arc_swap::ArcSwap::from_pointee(gate));
    let srv = Server::start(state);
    let (_, g) = get_json(
        srv_strict.addr,
        "/api/v1/gate?max_divergence=0.01&min_samples=500",
    );
    assert_eq!(g["verdict"], "fail");
    let (_, g) = get_json(srv.addr, "/api/v1/gate?max_divergence=0.01&min_samples=500");
    let eps = g["endpoints"].as_array().unwrap();
    assert_eq!(eps[0]["endpoint"], "GET /noisy");
    assert_eq!(eps[0]["max_divergence"], 0.5);
    assert_eq!(eps[0]["verdict"], "pass");
    assert_eq!(eps[1]["verdict"], "pass");
    // The pool (15% over 2000) is still judged against the query's 1%: it fails, and the overall
    // verdict is the worst of pool and endpoints.
    assert_eq!(g["pool_verdict"], "fail");
    assert_eq!(g["verdict"], "fail");
    let (_, g) = get_json(
        srv.addr,
        "/api/v1/gate?max_divergence=0.01&min_samples=500&endpoint=GET%20%2Fnoisy",
    );
    assert_eq!(g["verdict"], "pass");
}

/// Issue 16: `gate.endpoints.E.min_samples` passed check-config and was ignored — with 96
/// samples and a per-endpoint minimum of 5, the gate said insufficient_data against the global
/// 500.
#[test]
fn per_endpoint_min_samples_is_honoured() {
    let clock = common::clock();
    let stats = common::stats(&clock);
    let f = Feeder::new(stats.clone());
    f.many(1000, "GET /busy", VerdictKind::Match);
    f.many(96, "GET /rare", VerdictKind::Match);
    let state = AdminState::new(stats, Arc::new(AtomicBool::new(true)));
    let without = Server::start(state.clone());
    let mut gate = shadowdiff::stats::GateConfig::default();
    assert_eq!(gate.min_samples, 500);
    gate.endpoints.insert(
        "GET /rare".into(),
        shadowdiff::stats::GateEndpointConfig {
            max_divergence: Some(0.1),
            min_samples: Some(5),
        },
    );
    let mut with_state = state.clone();
    with_state.gate = Arc::new(arc_swap::ArcSwap::from_pointee(gate.clone()));
    let with = Server::start(with_state);
    let line = |g: &Value, e: &str| {
        g["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["endpoint"] == e)
            .cloned()
            .unwrap()
    };
    let (_, g) = get_json(with.addr, "/api/v1/gate");
    let rare = line(&g, "GET /rare");
    assert_eq!(rare["samples"], 96);
    assert_eq!(rare["min_samples"], 5);
    assert_eq!(rare["verdict"], "pass", "{g}");
    assert_eq!(line(&g, "GET /busy")["min_samples"], 500);
    assert_eq!(g["verdict"], "pass", "{g}");
    // Gating the endpoint alone: its minimum applies to the pool, which is that endpoint.
    let (_, g) = get_json(with.addr, "/api/v1/gate?endpoint=GET%20%2Frare");
    assert_eq!(
        (&g["verdict"], &g["min_samples"]),
        (&json!("pass"), &json!(5))
    );
    // The override wins over the query's min_samples, as max_divergence's does.
    let (_, g) = get_json(
        with.addr,
        "/api/v1/gate?min_samples=1000&endpoint=GET%20%2Frare",
    );
    assert_eq!(g["verdict"], "pass");
    // Without the override the same data wait for the global 500.
    let (_, g) = get_json(
        without.addr,
        "/api/v1/gate?max_divergence=0.1&endpoint=GET%20%2Frare",
    );
    assert_eq!(g["verdict"], "insufficient_data");
    // The config file's key reaches the gate (check-config and the server read the same struct).
    let cfg = shadowdiff::config::Config::from_yaml(
        std::path::Path::new("shadowdiff.yaml"),
        "gate:\n  min_samples_for: pass\n  method: wilson\n  endpoints:\n    \"GET /rare\": {min_samples: 5, max_divergence: 10%}\n",
    )
    .unwrap();
    assert_eq!(
        cfg.gate.min_samples_for,
        shadowdiff::stats::MinSamplesFor::Pass
    );
    assert_eq!(cfg.gate.method, shadowdiff::stats::GateMethod::Wilson);
    assert_eq!(cfg.gate.endpoints["GET /rare"], gate.endpoints["GET /rare"]);
}

/// Issue 16: 142 samples at 100% against 1% waited for min_samples; `min_samples_for=pass`
/// (config `gate.min_samples_for`) lets overwhelming evidence fail at once.
#[test]
fn min_samples_can_hold_back_pass_only() {
    let clock = common::clock();
    let stats = common::stats(&clock);
    let f = Feeder::new(stats.clone());
    f.many(142, "GET /broken", VerdictKind::Mismatch);
    f.many(142, "GET /fine", VerdictKind::Match);
    let srv = Server::start(AdminState::new(stats, Arc::new(AtomicBool::new(true))));
    for (endpoint, for_, want) in [
        ("GET%20%2Fbroken", "both", "insufficient_data"),
        ("GET%20%2Fbroken", "pass", "fail"),
        ("GET%20%2Ffine", "pass", "insufficient_data"),
    ] {
        let (code, g) = get_json(
            srv.addr,
            &format!("/api/v1/gate?endpoint={endpoint}&min_samples_for={for_}"),
        );
        assert_eq!(code, 200);
        assert_eq!(
            (&g["verdict"], &g["min_samples_for"]),
            (&json!(want), &json!(for_)),
            "{g}"
        );
    }
}

#[test]
fn mismatches_page_newest_first_and_filter() {
    let (_clock, _f, srv) = setup();
    let (code, p1) = get_json(srv.addr, "/api/v1/mismatches?limit=50");
    assert_eq!(code, 200);
    let ids = |v: &Value| -> Vec<String> {
        v["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let ids1 = ids(&p1);
    assert_eq!(ids1.len(), 50);
    // 250 events published (200 mismatch + 50 candidate_error), numbered 0..249.
    assert_eq!(ids1[0], "01TEST00000249");
    assert!(ids1.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(p1["next_before"], ids1[49].as_str());
    let (_, p2) = get_json(
        srv.addr,
        &format!("/api/v1/mismatches?limit=50&before={}", ids1[49]),
    );
    let ids2 = ids(&p2);
    assert_eq!(ids2.len(), 50);
    assert_eq!(ids2[0], "01TEST00000199");
    // Walk to the end: 250 distinct ids, the last page short with no next_before.
    let mut all = ids1.clone();
    let mut before = p1["next_before"].as_str().map(str::to_string);
    while let Some(b) = before {
        let (_, p) = get_json(srv.addr, &format!("/api/v1/mismatches?limit=60&before={b}"));
        all.extend(ids(&p));
        before = p["next_before"].as_str().map(str::to_string);
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 250);

    let (_, b) = get_json(
        srv.addr,
        "/api/v1/mismatches?endpoint=GET%20%2Fb&limit=1000",
    );
    let evs = b["mismatches"].as_array().unwrap();
    assert_eq!(evs.len(), 100);
    assert!(evs.iter().all(|e| e["endpoint"] == B));
    assert_eq!(b["next_before"], Value::Null);
    let (_, s) = get_json(srv.addr, "/api/v1/mismatches?signature=sig-b2&limit=1000");
    assert_eq!(s["mismatches"].as_array().unwrap().len(), 40);
    // By field: the 40 exchanges of GET /b that also differed on /ts; /name on all 80.
    let (_, s) = get_json(srv.addr, "/api/v1/mismatches?field=%2Fts&limit=1000");
    let evs = s["mismatches"].as_array().unwrap();
    assert_eq!(evs.len(), 40);
    assert!(evs.iter().all(|e| {
        e["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["field"] == "/ts")
    }));
    let (_, s) = get_json(
        srv.addr,
        "/api/v1/mismatches?field=%2Fname&endpoint=GET%20%2Fb&limit=1000",
    );
    assert_eq!(s["mismatches"].as_array().unwrap().len(), 80);
    let (_, s) = get_json(
        srv.addr,
        "/api/v1/mismatches?verdict=candidate_error&endpoint=POST%20%2Fc&limit=1000",
    );
    assert_eq!(s["mismatches"].as_array().unwrap().len(), 10);
    // One event by id, with its differences.
    let (code, e) = get_json(srv.addr, &format!("/api/v1/mismatches/{}", ids1[0]));
    assert_eq!(code, 200);
    assert_eq!(e["id"], ids1[0].as_str());
    let (code, _) = get_json(srv.addr, "/api/v1/mismatches/nope");
    assert_eq!(code, 404);
}

#[test]
fn signatures_are_clustered() {
    let (_clock, _f, srv) = setup();
    let (code, s) = get_json(srv.addr, "/api/v1/signatures");
    assert_eq!(code, 200);
    let sigs = s["signatures"].as_array().unwrap();
    let summary: Vec<(String, String, u64)> = sigs
        .iter()
        .map(|x| {
            (
                x["signature"].as_str().unwrap().into(),
                x["endpoint"].as_str().unwrap().into(),
                x["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("sig-a".into(), A.into(), 100),
            ("sig-b1".into(), B.into(), 40),
            ("sig-b2".into(), B.into(), 40),
            ("sig-err".into(), A.into(), 20),
            ("sig-err".into(), B.into(), 20),
            ("sig-c".into(), C.into(), 20),
            ("sig-err".into(), C.into(), 10),
        ]
    );
    let b2 = &sigs[2];
    assert_eq!(
        b2["fields"],
        json!([{"field": "/name", "kind": "value"}, {"field": "/ts", "kind": "value"}])
    );
    assert_eq!(b2["verdict"], "mismatch");
    assert!(b2["example_id"].as_str().unwrap().starts_with("01TEST"));
    let (_, s) = get_json(srv.addr, "/api/v1/signatures?endpoint=POST%20%2Fc");
    assert_eq!(s["signatures"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_parameters_are_400_naming_the_parameter() {
    let (_clock, _f, srv) = setup();
    for (pq, param) in [
        ("/api/v1/summary?window=soon", "window"),
        ("/api/v1/summary?window=2h", "window"),
        ("/api/v1/summary?windw=15m", "windw"),
        ("/api/v1/gate?max_divergence=2", "max_divergence"),
        ("/api/v1/gate?min_samples=-1", "min_samples"),
        ("/api/v1/gate?window=0s", "window"),
        ("/api/v1/gate?method=bayes", "method"),
        ("/api/v1/gate?min_samples_for=fail", "min_samples_for"),
        ("/api/v1/mismatches?limit=0", "limit"),
        ("/api/v1/mismatches?limit=abc", "limit"),
        ("/api/v1/mismatches?verdict=match", "verdict"),
        ("/api/v1/signatures?sig=x", "sig"),
    ] {
        let (code, v) = get_json(srv.addr, pq);
        assert_eq!(code, 400, "{pq}");
        assert_eq!(v["parameter"], param, "{pq}: {v}");
        assert!(v["error"].as_str().unwrap().len() > 10, "{pq}: {v}");
    }
}

#[test]
fn health_and_readiness() {
    let (_clock, _f, srv) = setup();
    assert_eq!(get(srv.addr, "/healthz").0, 200);
    assert_eq!(get(srv.addr, "/readyz").0, 503);
    srv.ready.store(true, Ordering::Release);
    assert_eq!(get(srv.addr, "/readyz").0, 200);
    let (code, html) = get(srv.addr, "/");
    assert_eq!(code, 200);
    assert!(
        html.contains("<html") || html.contains("<!doctype"),
        "{html}"
    );
}

struct SinkCounters;

impl MetricsSource for SinkCounters {
    fn collect(&self) -> Vec<MetricFamily> {
        vec![
            MetricFamily::counter(
                shadowdiff::pipeline::metrics::SINK_EVENTS_TOTAL,
                "unused: merged",
            )
            .with(&[("sink", "file"), ("outcome", "written")], 240.0)
            .with(&[("sink", "file"), ("outcome", "dropped")], 10.0),
        ]
    }
}

#[test]
fn metrics_parse_as_prometheus_text() {
    use prometheus_parse::{Scrape, Value as P};
    let clock = common::clock();
    let stats = common::stats(&clock);
    let f = Feeder::new(stats.clone());
    controlled_mix(&f);
    let in_flight = || {
        vec![MetricFamily::gauge(
            shadowdiff::ingest::SHADOW_IN_FLIGHT,
            "x",
            7.0,
        )]
    };
    let state = AdminState::new(stats, Arc::new(AtomicBool::new(true)))
        .with_metrics_source(Arc::new(in_flight))
        .with_metrics_source(Arc::new(SinkCounters));
    let srv = Server::start(state);
    let (code, text) = get(srv.addr, "/metrics");
    assert_eq!(code, 200);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let find = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    let num = |v: &P| match v {
        P::Counter(x) | P::Gauge(x) | P::Untyped(x) => *x,
        other => panic!("not a number: {other:?}"),
    };
    assert_eq!(
        num(&find(
            "shadowdiff_exchanges_total",
            &[("endpoint", A), ("verdict", "match")]
        )
        .value),
        400.0
    );
    assert!(matches!(
        find(
            "shadowdiff_exchanges_total",
            &[("endpoint", A), ("verdict", "match")]
        )
        .value,
        P::Counter(_)
    ));
    assert_eq!(
        num(&find(
            "shadowdiff_exchanges_total",
            &[("endpoint", C), ("verdict", "candidate_error")]
        )
        .value),
        10.0
    );
    assert_eq!(
        num(&find(
            "shadowdiff_shadow_skipped_total",
            &[("reason", "sampled_out")]
        )
        .value),
        10.0
    );
    assert_eq!(
        num(&find(
            "shadowdiff_shadow_skipped_total",
            &[("reason", "body_too_large")]
        )
        .value),
        5.0
    );
    assert_eq!(
        num(&find(
            "shadowdiff_shadow_skipped_total",
            &[("reason", "circuit_open")]
        )
        .value),
        0.0
    );
    let r = num(&find("shadowdiff_divergence_ratio", &[("endpoint", B)]).value);
    assert_eq!(r, 100.0 / 300.0);
    assert!(matches!(
        find("shadowdiff_divergence_ratio", &[("endpoint", B)]).value,
        P::Gauge(_)
    ));
    assert_eq!(num(&find("shadowdiff_shadow_in_flight", &[]).value), 7.0);
    assert_eq!(
        num(&find(
            "shadowdiff_sink_events_total",
            &[("sink", "file"), ("outcome", "dropped")]
        )
        .value),
        10.0
    );
    // Latency histogram: A's primaries are all 1 ms, its candidates 1.2–1.5 ms.
    let h = |side: &str| match &find(
        "shadowdiff_upstream_latency_seconds",
        &[("side", side), ("endpoint", A)],
    )
    .value
    {
        P::Histogram(b) => b.iter().map(|c| (c.less_than, c.count)).collect::<Vec<_>>(),
        other => panic!("not a histogram: {other:?}"),
    };
    let p = h("primary");
    assert_eq!(p.len(), 14, "13 bounds and +Inf: {p:?}");
    assert_eq!(p[0], (0.001, 520.0));
    assert_eq!(p[13], (f64::INFINITY, 520.0));
    let c = h("candidate");
    assert_eq!(c[0], (0.001, 0.0));
    assert_eq!(c[1], (0.0025, 500.0));
    let count = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "shadowdiff_upstream_latency_seconds_count"
                && s.labels.get("side") == Some("primary")
                && s.labels.get("endpoint") == Some(A)
        })
        .map(|s| num(&s.value));
    assert_eq!(count, Some(520.0));
    let sum = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "shadowdiff_upstream_latency_seconds_sum"
                && s.labels.get("side") == Some("candidate")
                && s.labels.get("endpoint") == Some(A)
        })
        .map(|s| num(&s.value))
        .unwrap();
    assert!(
        (sum - (400.0 * 0.0015 + 100.0 * 0.0012)).abs() < 1e-9,
        "{sum}"
    );
    // The paired delta (candidate − primary), signed: B's matches −200 µs, its mismatches
    // +200 µs; C's are all 0; errors have no candidate latency, so no delta.
    let delta =
        |ep: &str| match &find("shadowdiff_latency_delta_seconds", &[("endpoint", ep)]).value {
            P::Histogram(b) => b.iter().map(|c| (c.less_than, c.count)).collect::<Vec<_>>(),
            other => panic!("not a histogram: {other:?}"),
        };
    let b = delta(B);
    assert_eq!(b.len(), 28, "27 bounds and +Inf: {b:?}");
    let at = |v: &[(f64, f64)], le: f64| v.iter().find(|(l, _)| *l == le).map(|(_, n)| *n);
    assert_eq!(at(&b, -0.001), Some(0.0), "{b:?}");
    assert_eq!(at(&b, 0.0), Some(200.0), "{b:?}");
    assert_eq!(at(&b, 0.001), Some(280.0), "{b:?}");
    assert_eq!(at(&b, f64::INFINITY), Some(280.0), "{b:?}");
    let c = delta(C);
    assert_eq!((at(&c, -0.001), at(&c, 0.0)), (Some(0.0), Some(120.0)));
    let delta_sum = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "shadowdiff_latency_delta_seconds_sum"
                && s.labels.get("endpoint") == Some(B)
        })
        .map(|s| num(&s.value))
        .unwrap();
    assert!(
        (delta_sum - (80.0 - 200.0) * 0.0002).abs() < 1e-9,
        "{delta_sum}"
    );
    // Each family is declared once, even when several sources report it.
    assert_eq!(
        text.matches("# TYPE shadowdiff_sink_events_total ").count(),
        1
    );
}

#[test]
fn noise_routes_serve_the_learned_model_and_loadable_rules() {
    use shadowdiff::compare::Verdict;
    use shadowdiff::compare::rules::RuleSet;
    use shadowdiff::stats::noise::{NoiseConfig, NoiseModel};
    use shadowdiff::stats::{DEFAULT_MAX_ENDPOINTS, Stats, StatsConfig};

    let stats = Arc::new(Stats::new(StatsConfig::default(), DEFAULT_MAX_ENDPOINTS));
    // Without a secondary: the routes answer, and say so.
    let plain = Server::start(AdminState::new(
        stats.clone(),
        Arc::new(AtomicBool::new(true)),
    ));
    let (code, v) = get_json(plain.addr, "/api/v1/noise");
    assert_eq!((code, &v["secondary"]), (200, &json!(false)));
    let (code, yaml) = get(plain.addr, "/api/v1/noise/rules");
    assert_eq!(code, 200);
    assert!(
        RuleSet::from_yaml(&yaml).unwrap().rules.is_empty(),
        "{yaml}"
    );

    // With a secondary: /ts differs primary-vs-secondary in every exchange, /total never does.
    let model = Arc::new(NoiseModel::new(
        NoiseConfig {
            min_samples: 10,
            ..Default::default()
        },
        DEFAULT_MAX_ENDPOINTS,
    ));
    for _ in 0..12 {
        let mut v = Verdict::skipped(SkipReason::SampledOut);
        v.kind = VerdictKind::Mismatch;
        v.skip_reason = None;
        v.differences = vec![
            diff("/ts", DiffKind::Value, false),
            diff("/total", DiffKind::Value, false),
        ];
        v.secondary_differences = Some(vec![diff("/ts", DiffKind::Value, false)]);
        model.apply("GET /orders/{id}", &mut v);
    }
    let mut state = AdminState::new(stats, Arc::new(AtomicBool::new(true)));
    state.noise = Some(model);
    let srv = Server::start(state);
    let (code, v) = get_json(srv.addr, "/api/v1/noise");
    assert_eq!(code, 200);
    let fields = &v["endpoints"][0]["fields"];
    let status = |f: &str| {
        fields
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["field"] == f)
            .map(|x| x["status"].clone())
    };
    assert_eq!(status("/ts"), Some(json!("noisy")), "{v}");
    // The candidate changes /total while the legacy instances never differ on it: real.
    assert_eq!(status("/total"), Some(json!("real")), "{v}");
    let (code, yaml) = get(srv.addr, "/api/v1/noise/rules");
    assert_eq!(code, 200);
    let rules = RuleSet::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(rules.rules.len(), 1, "{yaml}");
    assert!(
        yaml.contains("\"/ts\"") && !yaml.contains("/total"),
        "{yaml}"
    );
}
