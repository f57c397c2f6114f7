use super::*;

fn rule(method: GateMethod, max_divergence: f64, min_samples: u64) -> GateRule {
    GateRule {
        max_divergence,
        min_samples,
        min_samples_for: MinSamplesFor::Both,
        method,
    }
}

fn verdict(k: u64, n: u64, r: &GateRule) -> GateVerdict {
    judge(
        GateCounts {
            divergent: k,
            samples: n,
        },
        r,
    )
    .verdict
}

#[test]
fn wilson_verdicts() {
    let w = |max, min| rule(GateMethod::Wilson, max, min);
    // 0/1000: Wilson upper = z²/(n+z²) = 3.8415/1003.84 ≈ 0.00383 ≤ 0.01 → pass.
    assert_eq!(verdict(0, 1000, &w(0.01, 500)), GateVerdict::Pass);
    // 100/1000 = 10%, lower bound ≈ 0.083 > 0.01 → fail.
    assert_eq!(verdict(100, 1000, &w(0.01, 500)), GateVerdict::Fail);
    // 10/1000 = exactly the threshold: the interval straddles it.
    assert_eq!(
        verdict(10, 1000, &w(0.01, 500)),
        GateVerdict::InsufficientData
    );
    // Too few samples, however bad.
    assert_eq!(
        verdict(400, 400, &w(0.01, 500)),
        GateVerdict::InsufficientData
    );
    assert_eq!(verdict(0, 0, &w(0.01, 0)), GateVerdict::InsufficientData);
    assert!(GateVerdict::Fail > GateVerdict::InsufficientData);
    assert!(GateVerdict::InsufficientData > GateVerdict::Pass);
}

#[test]
fn sequential_verdicts_need_more_evidence_than_wilson() {
    let s = |max, min| rule(GateMethod::Sequential, max, min);
    assert_eq!(verdict(0, 1000, &s(0.01, 500)), GateVerdict::Pass);
    assert_eq!(verdict(100, 1000, &s(0.01, 500)), GateVerdict::Fail);
    assert_eq!(
        verdict(10, 1000, &s(0.01, 500)),
        GateVerdict::InsufficientData
    );
    // 3/1000 passes Wilson (upper 0.88%) but not the sequence, which must hold at every n.
    assert_eq!(
        verdict(3, 1000, &rule(GateMethod::Wilson, 0.01, 500)),
        GateVerdict::Pass
    );
    assert_eq!(
        verdict(3, 1000, &s(0.01, 500)),
        GateVerdict::InsufficientData
    );
    assert_eq!(verdict(3, 2000, &s(0.01, 500)), GateVerdict::Pass);
    // The reported interval is the sequence's, wider than Wilson's.
    let j = judge(
        GateCounts {
            divergent: 3,
            samples: 1000,
        },
        &s(0.01, 500),
    );
    let (wlo, whi) = wilson95(3, 1000);
    assert!(j.ci95[0] < wlo && j.ci95[1] > whi, "{j:?}");
}

/// Issue 16: 142 samples at 100% against 1% waited for min_samples (500). With
/// `min_samples_for: pass` the evidence fails the gate at once; a pass still waits.
#[test]
fn min_samples_can_hold_back_pass_only() {
    let mut r = rule(GateMethod::Sequential, 0.01, 500);
    assert_eq!(verdict(142, 142, &r), GateVerdict::InsufficientData);
    r.min_samples_for = MinSamplesFor::Pass;
    assert_eq!(verdict(142, 142, &r), GateVerdict::Fail);
    assert_eq!(
        verdict(0, 499, &rule(GateMethod::Sequential, 0.1, 0)),
        GateVerdict::Pass
    );
    r.max_divergence = 0.1;
    assert_eq!(verdict(0, 499, &r), GateVerdict::InsufficientData);
    // Not decided is not decided, whatever min_samples says.
    assert_eq!(verdict(50, 500, &r), GateVerdict::InsufficientData);
}

#[test]
fn endpoint_overrides_win_over_the_query() {
    let mut cfg = GateConfig::default();
    cfg.endpoints.insert(
        "GET /rare".into(),
        GateEndpointConfig {
            max_divergence: None,
            min_samples: Some(5),
        },
    );
    let p = cfg.params(GateAsk {
        max_divergence: Some(0.1),
        min_samples: Some(500),
        ..GateAsk::default()
    });
    assert_eq!(p.rule_for("GET /rare").min_samples, 5);
    assert_eq!(p.rule_for("GET /rare").max_divergence, 0.1);
    assert_eq!(p.rule_for("GET /other").min_samples, 500);
    assert_eq!(p.pool_rule().min_samples, 500);
    let one = cfg.params(GateAsk {
        endpoint: Some("GET /rare".into()),
        ..GateAsk::default()
    });
    assert_eq!(one.pool_rule().min_samples, 5);
    assert_eq!(one.rule.method, GateMethod::Sequential);
}

/// The "How soon it decides" table of docs/gate.md: the first n at which a candidate diverging at
/// exactly rate p (k = round(p·n)) is decided against 1%, without min_samples.
#[test]
fn decision_sample_sizes_in_the_docs() {
    let first = |method, p: f64| {
        let j = Judge::new(rule(method, 0.01, 0));
        (1..200_000u64)
            .find(|&n| {
                let k = (p * n as f64).round() as u64;
                j.verdict(GateCounts {
                    divergent: k,
                    samples: n,
                }) != GateVerdict::InsufficientData
            })
            .unwrap()
    };
    let table: Vec<(f64, u64, u64)> = [0.0, 0.005, 0.008, 0.0125, 0.02, 0.05, 1.0]
        .into_iter()
        .map(|p| {
            (
                p,
                first(GateMethod::Wilson, p),
                first(GateMethod::Sequential, p),
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            (0.0, 381, 473),
            (0.005, 1441, 2858),
            (0.008, 9056, 26179),
            (0.0125, 5720, 19720),
            (0.02, 275, 1225),
            (0.05, 10, 130),
            (1.0, 1, 4),
        ]
    );
}
