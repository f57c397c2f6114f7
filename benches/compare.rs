#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The comparator against its baseline, in the same run (STYLE.md, "Benches").
//!
//! For realistic bodies of about 1 KB, 20 KB, 600 KB and 2 MB (a page of an orders API: orders
//! with customers, addresses, line items, tags, timestamps, trace ids, big ids and decimals,
//! generated deterministically from a seed) this measures, per size:
//!
//! - `validate_only`: `serde_json::from_slice::<IgnoredAny>` on both bodies (the floor);
//! - `two_parses`: `serde_json::from_slice::<Value>` on both bodies (the baseline);
//! - `two_parses_sonic` (with `--features sonic`): the same two DOM parses with `sonic_rs`;
//! - `full_compare_identical`: `Comparator::compare_bodies` on identical bytes (short-circuits);
//! - `full_compare_5diffs`: `Comparator::compare_bodies` where the candidate is a
//!   re-serialisation of the primary with 5 values changed, so both bodies are parsed and walked;
//! - `full_compare_light`: only volatile values differ (trace ids, timestamps: ignored by the
//!   rules), same serialiser and key order — the common shadow pair, a `match`;
//! - `full_compare_heavy`: re-serialised with three values changed in every order.
//!
//! Throughput is the bytes of both bodies. The figure that matters is
//! time(two_parses) / time(full_compare_5diffs); `benches/summarise.py` prints it.
//!
//! Run: `cargo bench --bench compare -- --warm-up-time 1 --measurement-time 3`
//! (add `--features sonic` for the sonic-rs rows).

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use serde::de::IgnoredAny;
use serde_json::Value;
use shadowdiff::compare::rules::RuleSet;
use shadowdiff::compare::{Comparator, CompareOptions, VerdictKind};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ENDPOINT: &str = "GET /v1/orders";
const MEDIA: Option<&str> = Some("application/json");

/// Rules for the orders endpoint, on top of the repository's `diff-rules/default.yaml`.
const ORDER_RULES: &str = r#"
version: 1
endpoints:
  - "GET /v1/orders"
rules:
  - match: "GET /v1/orders"
    ignore:
      - "/**/trace_id"
      - "/meta/generated_at"
      - "/meta/request_id"
    unordered:
      - "/orders/*/tags"
    keyed:
      "/orders/*/items": sku
    tolerance:
      "/orders/*/totals/tax": { abs: 0.01 }
      "/orders/*/items/*/weight_kg": { rel: 0.001 }
"#;

/// (label, target size of one body in bytes).
const SIZES: &[(&str, usize)] = &[
    ("1KB", 1 << 10),
    ("20KB", 20 << 10),
    ("600KB", 600 << 10),
    ("2MB", 2 << 20),
];

#[path = "support/orders.rs"]
mod orders;

fn comparator() -> Comparator {
    let default_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("diff-rules/default.yaml");
    let default = std::fs::read_to_string(&default_path).unwrap();
    let rules = RuleSet::from_sources(&[
        (default_path.as_path(), default.as_str()),
        (Path::new("<bench>"), ORDER_RULES),
    ])
    .unwrap();
    Comparator::new(Arc::new(rules), CompareOptions::default())
}

/// Whether sonic-rs, parsing into `serde_json::Value`, keeps every number's value exactly.
#[cfg(feature = "sonic")]
fn sonic_is_exact(bodies: &[&[u8]]) -> bool {
    bodies.iter().all(|b| {
        let s: Value = sonic_rs::from_slice(b).unwrap();
        let j: Value = serde_json::from_slice(b).unwrap();
        let diffs = comparator_plain().compare_bodies(
            None,
            &serde_json::to_vec(&j).unwrap(),
            &serde_json::to_vec(&s).unwrap(),
            MEDIA,
            MEDIA,
        );
        if !diffs.differences.is_empty() {
            eprintln!(
                "sonic-rs is not exact: {} differences, first {:?}",
                diffs.differences.len(),
                diffs.differences[0]
            );
        }
        diffs.differences.is_empty()
    })
}

#[cfg(feature = "sonic")]
fn comparator_plain() -> Comparator {
    Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default())
}

fn bench(c: &mut Criterion) {
    let cmp = comparator();
    for (i, &(label, target)) in SIZES.iter().enumerate() {
        let p = orders::primary_body(target, 0x5eed_0000 + i as u64);
        let cand = orders::candidate_body(&p);
        let same = p.clone();
        let light = orders::volatile_body(&p);
        let heavy = orders::heavy_body(&p);
        assert_eq!(
            cmp.compare_bodies(Some(ENDPOINT), &p, &light, MEDIA, MEDIA)
                .kind,
            VerdictKind::Match
        );
        let h = cmp.compare_bodies(Some(ENDPOINT), &p, &heavy, MEDIA, MEDIA);
        assert!(h.differences.len() >= 3, "{label}: {}", h.differences.len());
        // The benchmark is only meaningful if the comparator finds exactly the 5 changes.
        let v = cmp.compare_bodies(Some(ENDPOINT), &p, &cand, MEDIA, MEDIA);
        assert_eq!(v.kind, VerdictKind::Mismatch);
        assert_eq!(v.differences.len(), 5, "{label}: {:#?}", v.differences);
        assert_eq!(
            cmp.compare_bodies(Some(ENDPOINT), &p, &same, MEDIA, MEDIA)
                .kind,
            VerdictKind::Match
        );
        eprintln!(
            "{label}: primary {} bytes, candidate {} bytes",
            p.len(),
            cand.len()
        );
        #[cfg(feature = "sonic")]
        eprintln!(
            "{label}: sonic-rs into serde_json::Value exact: {}",
            sonic_is_exact(&[&p, &cand])
        );

        let mut g = c.benchmark_group("compare");
        g.throughput(Throughput::Bytes((p.len() + cand.len()) as u64));
        if target >= 100 << 10 {
            // Milliseconds per iteration: few, flat samples keep the run short on a shared machine.
            g.sample_size(10).sampling_mode(SamplingMode::Flat);
        } else {
            g.sample_size(50);
        }
        g.bench_function(BenchmarkId::new("validate_only", label), |b| {
            b.iter(|| {
                serde_json::from_slice::<IgnoredAny>(black_box(&p)).unwrap();
                serde_json::from_slice::<IgnoredAny>(black_box(&cand)).unwrap();
            })
        });
        g.bench_function(BenchmarkId::new("two_parses", label), |b| {
            b.iter(|| {
                let a = serde_json::from_slice::<Value>(black_box(&p)).unwrap();
                let z = serde_json::from_slice::<Value>(black_box(&cand)).unwrap();
                (a, z)
            })
        });
        #[cfg(feature = "sonic")]
        g.bench_function(BenchmarkId::new("two_parses_sonic", label), |b| {
            b.iter(|| {
                let a = sonic_rs::from_slice::<Value>(black_box(&p)).unwrap();
                let z = sonic_rs::from_slice::<Value>(black_box(&cand)).unwrap();
                (a, z)
            })
        });
        g.bench_function(BenchmarkId::new("full_compare_identical", label), |b| {
            b.iter(|| {
                cmp.compare_bodies(
                    Some(ENDPOINT),
                    black_box(&p),
                    black_box(&same),
                    MEDIA,
                    MEDIA,
                )
            })
        });
        g.bench_function(BenchmarkId::new("full_compare_5diffs", label), |b| {
            b.iter(|| {
                cmp.compare_bodies(
                    Some(ENDPOINT),
                    black_box(&p),
                    black_box(&cand),
                    MEDIA,
                    MEDIA,
                )
            })
        });
        // Light: only volatile values differ (ignored by the rules), same key order.
        g.throughput(Throughput::Bytes((p.len() + light.len()) as u64));
        g.bench_function(BenchmarkId::new("full_compare_light", label), |b| {
            b.iter(|| {
                cmp.compare_bodies(
                    Some(ENDPOINT),
                    black_box(&p),
                    black_box(&light),
                    MEDIA,
                    MEDIA,
                )
            })
        });
        // Heavy: three values changed in every order (truncated at 1,000 differences).
        g.throughput(Throughput::Bytes((p.len() + heavy.len()) as u64));
        g.bench_function(BenchmarkId::new("full_compare_heavy", label), |b| {
            b.iter(|| {
                cmp.compare_bodies(
                    Some(ENDPOINT),
                    black_box(&p),
                    black_box(&heavy),
                    MEDIA,
                    MEDIA,
                )
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
