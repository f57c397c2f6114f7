use super::*;
use crate::compare::noise::mark;
use crate::compare::noise::tests::d;

fn verdict(cand: Vec<Difference>, sec: Vec<Difference>) -> Verdict {
    let mut v = Verdict::skipped(crate::compare::SkipReason::SampledOut);
    v.skip_reason = None;
    v.kind = if cand.is_empty() {
        VerdictKind::Match
    } else {
        VerdictKind::Mismatch
    };
    v.differences = cand;
    mark(&mut v.differences, &sec);
    if !v.differences.is_empty() && v.differences.iter().all(|d| d.noise) {
        v.kind = VerdictKind::Noise;
    }
    v.secondary_differences = Some(sec);
    v
}

fn cfg() -> NoiseConfig {
    NoiseConfig {
        min_samples: 10,
        ..Default::default()
    }
}

#[test]
fn a_field_noisy_between_legacy_instances_is_learned() {
    let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    // /ts differs between primary and secondary in every exchange, and for the candidate.
    for _ in 0..10 {
        let mut v = verdict(
            vec![d("/ts", DiffKind::Value)],
            vec![d("/ts", DiffKind::Value)],
        );
        m.apply("GET /x", &mut v);
        assert_eq!(v.kind, VerdictKind::Noise);
    }
    let snap = m.snapshot();
    assert_eq!(snap[0].samples, 10);
    assert_eq!(
        (
            snap[0].fields[0].raw,
            snap[0].fields[0].noise,
            snap[0].fields[0].status
        ),
        (10, 10, FieldStatus::Noisy)
    );
    // Learned: even when the secondary happens to agree, the candidate's /ts difference is noise.
    let mut v = verdict(vec![d("/ts", DiffKind::Value)], vec![]);
    assert_eq!(
        v.kind,
        VerdictKind::Mismatch,
        "per-exchange marking alone cannot explain it"
    );
    m.apply("GET /x", &mut v);
    assert_eq!(v.kind, VerdictKind::Noise);
    // Other endpoints learn separately.
    let mut other = verdict(vec![d("/ts", DiffKind::Value)], vec![]);
    m.apply("GET /y", &mut other);
    assert_eq!(other.kind, VerdictKind::Mismatch);
}

#[test]
fn a_sometimes_noisy_field_always_changed_by_the_candidate_stays_reported() {
    // Secondary differs on /price in 3 of 10 exchanges; the candidate changed it always.
    // `noisy_at`: which exchanges of each ten the secondary differs in.
    for (noisy_at, want_reported) in [
        // Three exchanges in, one noisy one: too few to call the field real, so exchange 3
        // stands as noise; by exchange 6 the counts say real (inside the learning phase),
        // and every exchange from then on is reported.
        ([3, 6, 9], 99),
        // The first three exchanges are all noisy: nothing yet tells the field apart from
        // noise, so those three stand as noise; by the next noisy one, it is real.
        ([0, 1, 2], 97),
    ] {
        let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
        let mut reported = 0;
        for i in 0..100 {
            let sec = if noisy_at.contains(&(i % 10)) {
                vec![d("/price", DiffKind::Value)]
            } else {
                vec![]
            };
            let mut v = verdict(vec![d("/price", DiffKind::Value)], sec);
            m.apply("GET /p", &mut v);
            if v.kind == VerdictKind::Mismatch {
                reported += 1;
            }
        }
        assert_eq!(reported, want_reported, "noisy at {noisy_at:?}");
        let snap = m.snapshot();
        assert_eq!(snap[0].fields[0].status, FieldStatus::Real);
        assert_eq!((snap[0].fields[0].raw, snap[0].fields[0].noise), (100, 30));
    }
}

#[test]
fn a_field_both_sides_shuffle_half_the_time_stays_noisy() {
    // Secondary and candidate each differ on /tags with probability 1/2, independently
    // (a fixed-seed generator, so the run is the same every time): the candidate is no
    // noisier than the legacy instances, and chance alone must not make the field real.
    let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut coin = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x & 1 == 1
    };
    let mut ever_real = 0;
    for _ in 0..2000 {
        let cand = if coin() {
            vec![d("/tags", DiffKind::Order)]
        } else {
            vec![]
        };
        let sec = if coin() {
            vec![d("/tags", DiffKind::Order)]
        } else {
            vec![]
        };
        let mut v = verdict(cand, sec);
        m.apply("GET /o", &mut v);
        let snap = m.snapshot();
        if let Some(f) = snap.first().and_then(|e| e.fields.first()) {
            ever_real += usize::from(f.status == FieldStatus::Real);
        }
    }
    assert_eq!(ever_real, 0, "exchanges after which the field looked real");
    assert_eq!(m.snapshot()[0].fields[0].status, FieldStatus::Noisy);
}

#[test]
fn a_mismatch_is_signed_by_its_real_differences_only() {
    // The same regression (/total) once with /ts noise around it and once without: one
    // cluster, whatever the noise did in each exchange.
    let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    let mut with_noise = verdict(
        vec![d("/ts", DiffKind::Value), d("/total", DiffKind::Value)],
        vec![d("/ts", DiffKind::Value)],
    );
    m.apply("GET /s", &mut with_noise);
    let mut without = verdict(vec![d("/total", DiffKind::Value)], vec![]);
    m.apply("GET /s", &mut without);
    assert_eq!(with_noise.kind, VerdictKind::Mismatch);
    assert_eq!(with_noise.signature, without.signature);
    assert_eq!(
        without.signature,
        Some(crate::compare::signature(&[d("/total", DiffKind::Value)]))
    );
    // All noise: signed by the noise, so noise clusters stay apart from real failures.
    let mut only_noise = verdict(
        vec![d("/ts", DiffKind::Value)],
        vec![d("/ts", DiffKind::Value)],
    );
    m.apply("GET /s", &mut only_noise);
    assert_eq!(only_noise.kind, VerdictKind::Noise);
    assert_eq!(
        only_noise.signature,
        Some(crate::compare::signature(&[d("/ts", DiffKind::Value)]))
    );
}

#[test]
fn without_a_secondary_nothing_changes() {
    let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    for _ in 0..20 {
        let mut v = Verdict::skipped(crate::compare::SkipReason::SampledOut);
        v.kind = VerdictKind::Mismatch;
        v.skip_reason = None;
        v.differences = vec![d("/ts", DiffKind::Value)];
        m.apply("GET /x", &mut v);
        assert_eq!(v.kind, VerdictKind::Mismatch);
        assert!(!v.differences[0].noise);
    }
    assert!(m.snapshot().is_empty());
}

#[test]
fn learned_rules_load_back_and_cancel_the_noise() {
    use crate::compare::rules::RuleSet;
    use crate::compare::{Comparator, CompareOptions};
    use crate::exchange::{Request, Response};
    use std::sync::Arc;
    let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
    let req = Request {
        method: "GET".into(),
        path: "/orders/1".into(),
        ..Default::default()
    };
    let resp = |b: String, rid: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("x-trace", rid.parse().unwrap());
        Response {
            status: 200,
            headers: h,
            body: bytes::Bytes::from(b),
            latency: Default::default(),
        }
    };
    let body = |i: u64, tags: &str, rate: &str| {
        format!(r#"{{"id":1,"at":"t{i}","tags":{tags},"rate":{rate},"total":5}}"#)
    };
    for i in 0..20u64 {
        let p = resp(body(i, r#"["a","b"]"#, "1.0001"), &format!("p{i}"));
        let s = resp(body(i + 100, r#"["b","a"]"#, "1.0002"), &format!("s{i}"));
        let c = resp(body(i + 200, r#"["b","a"]"#, "1.0003"), &format!("c{i}"));
        let mut v = cmp.compare_responses(&req, Some("GET /orders/{id}"), &p, &c);
        let sv = cmp.compare_responses(&req, Some("GET /orders/{id}"), &p, &s);
        mark(&mut v.differences, &sv.differences);
        v.secondary_differences = Some(sv.differences);
        m.apply("GET /orders/{id}", &mut v);
        assert_eq!(v.kind, VerdictKind::Noise, "{:?}", v.differences);
    }
    let yaml = m.rules_yaml();
    assert!(
        yaml.contains("unordered")
            && yaml.contains("\"/tags\"")
            && yaml.contains("\"/at\"")
            && yaml.contains("tolerance"),
        "{yaml}"
    );
    let rules = RuleSet::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let learned = Comparator::new(Arc::new(rules), CompareOptions::default());
    let p = resp(body(1, r#"["a","b"]"#, "1.0001"), "p");
    let c = resp(body(2, r#"["b","a"]"#, "1.0002"), "c");
    let v = learned.compare_responses(&req, Some("GET /orders/{id}"), &p, &c);
    assert_eq!(v.kind, VerdictKind::Match, "{yaml}\n{:?}", v.differences);
    // A real change on another field is still caught under the learned rules.
    let c2 = resp(
        body(2, r#"["b","a"]"#, "1.0002").replace("\"total\":5", "\"total\":6"),
        "c",
    );
    let v = learned.compare_responses(&req, Some("GET /orders/{id}"), &p, &c2);
    assert_eq!(
        v.differences
            .iter()
            .map(|d| d.path.as_str())
            .collect::<Vec<_>>(),
        vec!["/total"]
    );
}

/// A value difference on `field` between primary value `p` and secondary value `s`.
fn dv(field: &str, p: serde_json::Value, s: serde_json::Value) -> Difference {
    Difference {
        primary: p,
        candidate: s,
        ..d(field, DiffKind::Value)
    }
}

/// Feeds `n` exchanges in which the secondary (and the candidate, alike) differ on `field` with
/// the values `pair(i)`, and returns the field's suggestion.
fn learn(n: u64, field: &str, pair: impl Fn(u64) -> (f64, f64)) -> (NoiseModel, Suggestion) {
    let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    for i in 0..n {
        let (p, s) = pair(i);
        let diff = dv(field, p.into(), s.into());
        let mut v = verdict(vec![diff.clone()], vec![diff]);
        m.apply("GET /j", &mut v);
    }
    let f = m.snapshot()[0].fields[0].clone();
    assert_eq!(f.status, FieldStatus::Noisy);
    let s = f.suggestion.expect("a noisy field gets a suggestion");
    (m, s)
}

/// A reproducible jitter in [-1, 1).
fn jitter(i: u64) -> f64 {
    let x = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    2.0 * x - 1.0
}

#[test]
fn a_timestamp_that_never_repeats_is_ignored_not_given_a_tolerance() {
    // Epoch milliseconds, the secondary answering 1–500 ms later: the relative difference is
    // ~1e-13, which a tolerance would fit today and miss tomorrow.
    let (m, s) = learn(40, "/generated_at", |i| {
        let t = 1_767_225_600_000.0 + 1000.0 * i as f64;
        (t, t + 1.0 + (250.0 * (1.0 + jitter(i))).floor())
    });
    assert_eq!(s.rule, SuggestedRule::Ignore, "{s:?}");
    assert!(s.reason.contains("never repeat"), "{}", s.reason);
    assert_eq!((s.evidence.values, s.evidence.distinct), (80, 80));
    assert_eq!((s.evidence.noise, s.evidence.samples), (40, 40));
    let yaml = m.rules_yaml();
    assert!(yaml.contains("ignore:\n      - \"/generated_at\"   # noisy in 40 of 40; values never repeat (80 seen, all distinct)"), "{yaml}");
    assert!(!yaml.contains("tolerance"), "{yaml}");
    // The same for a string id.
    let m2 = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    for i in 0..20 {
        let diff = dv(
            "/id",
            format!("req-{i}-p").into(),
            format!("req-{i}-s").into(),
        );
        m2.apply("GET /j", &mut verdict(vec![diff.clone()], vec![diff]));
    }
    let s2 = m2.snapshot()[0].fields[0].suggestion.clone().unwrap();
    assert_eq!(s2.rule, SuggestedRule::Ignore);
    assert!(s2.reason.contains("never repeat"), "{}", s2.reason);
}

#[test]
fn a_jittery_number_with_a_stable_spread_gets_a_tolerance_that_holds() {
    // Prices from a small catalogue (so values repeat), the secondary off by up to ±0.1%.
    let price = |i: u64| [10.0, 20.0, 30.0][(i % 3) as usize];
    let (m, s) = learn(60, "/price", |i| {
        let p = price(i);
        (p, p * (1.0 + 0.001 * jitter(i)))
    });
    assert_eq!(s.rule, SuggestedRule::Tolerance, "{s:?}");
    let rel = s.rel.unwrap();
    let max_rel = s.evidence.max_rel.unwrap();
    assert!(max_rel > 0.0009 && max_rel <= 0.001, "{max_rel}");
    assert!((rel - 1.5 * max_rel).abs() < 1e-12);
    assert!(
        s.evidence.distinct < s.evidence.values,
        "the catalogue repeats"
    );
    assert!(
        2 * s.evidence.stable_for.unwrap() >= s.evidence.numeric,
        "{s:?}"
    );
    assert!(s.reason.contains("stable over the last"), "{}", s.reason);
    // The suggested file loads, and its tolerance absorbs the next jitter of the same size.
    let yaml = m.rules_yaml();
    let rules =
        crate::compare::rules::RuleSet::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let cmp = crate::compare::Comparator::new(std::sync::Arc::new(rules), Default::default());
    let v = cmp.compare_bodies(
        Some("GET /j"),
        br#"{"price": 20.0}"#,
        br#"{"price": 20.0199}"#,
        None,
        None,
    );
    assert_eq!(v.kind, VerdictKind::Match, "{yaml}");
}

#[test]
fn a_spread_that_keeps_growing_is_ignored_not_given_a_tolerance() {
    // The relative difference doubles every five exchanges: any tolerance fitted so far fails
    // on the next doubling.
    let (_, s) = learn(60, "/drift", |i| {
        let p = [10.0, 20.0][(i % 2) as usize];
        (p, p * (1.0 + 1e-7 * 2f64.powi((i / 5) as i32)))
    });
    assert_eq!(s.rule, SuggestedRule::Ignore, "{s:?}");
    assert!(s.reason.contains("not stable"), "{}", s.reason);
}

#[test]
fn a_learned_noisy_text_body_does_not_make_a_real_line_change_noise() {
    // Every exchange: the secondary's body differs on a request-id line (a `body` difference on
    // field ""), and so does the candidate's, marked noise line by line by the comparator.
    let m = NoiseModel::new(cfg(), crate::stats::DEFAULT_MAX_ENDPOINTS);
    let body = |noise: bool| Difference {
        noise,
        ..d("", DiffKind::Body)
    };
    for _ in 0..20 {
        let mut v = verdict(vec![], vec![body(false)]);
        v.differences = vec![body(true)];
        v.kind = VerdictKind::Noise;
        m.apply("GET /t", &mut v);
    }
    assert_eq!(m.snapshot()[0].fields[0].status, FieldStatus::Noisy);
    assert_eq!(
        m.snapshot()[0].fields[0].suggestion,
        None,
        "no rule for a text body"
    );
    // Now the candidate also changes another line: that hunk was judged real, and stays so.
    let mut v = verdict(vec![], vec![body(false)]);
    v.differences = vec![body(true), body(false)];
    v.kind = VerdictKind::Mismatch;
    m.apply("GET /t", &mut v);
    assert_eq!(v.kind, VerdictKind::Mismatch);
    assert_eq!(v.differences.iter().filter(|d| d.noise).count(), 1);
}
