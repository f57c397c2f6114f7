//! The gate polled after every sample (issue 16, item 2; docs/gate.md, "Simulation").
//!
//! What is simulated, exactly: a candidate whose exchanges diverge independently with a fixed
//! true rate p, judged against max_divergence θ = 1% with the shipped defaults (min_samples 500
//! for both verdicts), polled after every one of 100,000 samples, in 1,000 seeded runs per case:
//!
//! - p = 0.99% (just under θ): a `fail` at any poll is a wrong verdict;
//! - p = 1.01% (just over θ): a `pass` at any poll is a wrong verdict.
//!
//! So close to θ that 100,000 samples cannot tell the two apart (θ − p is a third of the
//! standard error at n = 100,000): the right verdict all along is `insufficient_data`, and
//! every decisive verdict the wrong side of θ is an error the repeated looks provoked.
//!
//! A run counts once if it was ever wrong. The sequential gate must be wrong in at most 5% of
//! runs in each case (its guarantee), and the fixed-sample Wilson gate measurably more often.
//!
//! Each poll asks [`Judge::verdict`], which is O(1). To keep 2 × 10⁸ polls within a debug test's
//! budget, the verdicts are first tabulated per n as the judge's own boundaries in k (its verdict
//! regions are intervals in k: pass up to one count, fail from another), so a poll is two
//! comparisons; the tabulation is checked against the judge itself on every k of a spread of n,
//! and on every poll of the first runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shadowdiff::stats::{GateCounts, GateMethod, GateRule, GateVerdict, Judge, MinSamplesFor};

const THRESHOLD: f64 = 0.01;
const POLLS: u64 = 100_000;
const RUNS: u64 = 1_000;
/// Runs whose every poll is also asked of the judge directly.
const CHECKED_RUNS: u64 = 10;

fn rule(method: GateMethod) -> GateRule {
    GateRule {
        max_divergence: THRESHOLD,
        min_samples: 500,
        min_samples_for: MinSamplesFor::Both,
        method,
    }
}

/// The judge's verdicts for n = 0..=POLLS, as boundaries in k: pass for k < `pass_below[n]`,
/// fail for k ≥ `fail_from[n]`, insufficient data between.
struct Table {
    pass_below: Vec<u64>,
    fail_from: Vec<u64>,
}

impl Table {
    fn of(judge: &Judge) -> Self {
        let v = |k: u64, n: u64| {
            judge.verdict(GateCounts {
                divergent: k,
                samples: n,
            })
        };
        let mut pass_below = vec![0; POLLS as usize + 1];
        let mut fail_from = vec![1; POLLS as usize + 1];
        let (mut p, mut f) = (0u64, 0u64);
        for n in 1..=POLLS {
            while p <= n && v(p, n) == GateVerdict::Pass {
                p += 1;
            }
            while p > 0 && v(p - 1, n) != GateVerdict::Pass {
                p -= 1;
            }
            while f > 0 && v(f - 1, n) == GateVerdict::Fail {
                f -= 1;
            }
            while f <= n && v(f, n) != GateVerdict::Fail {
                f += 1;
            }
            pass_below[n as usize] = p;
            fail_from[n as usize] = f;
        }
        Table {
            pass_below,
            fail_from,
        }
    }

    fn verdict(&self, k: u64, n: u64) -> GateVerdict {
        if k < self.pass_below[n as usize] {
            GateVerdict::Pass
        } else if k >= self.fail_from[n as usize] {
            GateVerdict::Fail
        } else {
            GateVerdict::InsufficientData
        }
    }
}

/// Runs ever wrong, per method, for true rate `p`; `wrong` is the verdict that is wrong there.
fn simulate(case: u64, p: f64, wrong: GateVerdict, judges: &[(Judge, Table); 2]) -> [u64; 2] {
    let cut = (p * 2f64.powi(64)) as u64;
    let mut ever = [0u64; 2];
    for run in 0..RUNS {
        let mut rng = SmallRng::seed_from_u64((case << 32) ^ run);
        let mut was = [false; 2];
        let mut k = 0;
        for n in 1..=POLLS {
            k += u64::from(rng.random::<u64>() < cut);
            for (m, (judge, table)) in judges.iter().enumerate() {
                let v = table.verdict(k, n);
                if run < CHECKED_RUNS {
                    let direct = judge.verdict(GateCounts {
                        divergent: k,
                        samples: n,
                    });
                    assert_eq!(v, direct, "table and judge disagree at {k}/{n}");
                }
                was[m] |= v == wrong;
            }
            // Nothing left to learn from this run: both were wrong already.
            if was[0] && was[1] && run >= CHECKED_RUNS {
                break;
            }
        }
        for m in 0..2 {
            ever[m] += u64::from(was[m]);
        }
    }
    ever
}

#[test]
fn polled_after_every_sample_the_sequential_gate_stays_within_five_percent_and_wilson_does_not() {
    let judges = [GateMethod::Sequential, GateMethod::Wilson].map(|m| {
        let j = Judge::new(rule(m));
        (j, Table::of(&j))
    });
    // The tabulation is the judge's answer on every k for a spread of n.
    for (judge, table) in &judges {
        for n in (1..=POLLS).step_by(997).chain([499, 500, 501, POLLS]) {
            for k in 0..=n.min(3 * n / 100 + 60) {
                let direct = judge.verdict(GateCounts {
                    divergent: k,
                    samples: n,
                });
                assert_eq!(table.verdict(k, n), direct, "{k}/{n}");
            }
            // Well above the threshold, every k fails (the regions are intervals in k).
            assert_eq!(
                table.verdict(n, n),
                judge.verdict(GateCounts {
                    divergent: n,
                    samples: n
                })
            );
        }
    }
    let limit = 0.05;
    // Three standard errors above 5% over RUNS runs: Wilson's excess is not chance.
    let clearly_above = limit + 3.0 * (limit * (1.0 - limit) / RUNS as f64).sqrt();
    let mut report = String::new();
    for (case, p, wrong) in [
        (1, 0.0099, GateVerdict::Fail),
        (2, 0.0101, GateVerdict::Pass),
    ] {
        let [seq, wilson] = simulate(case, p, wrong, &judges);
        let (rs, rw) = (seq as f64 / RUNS as f64, wilson as f64 / RUNS as f64);
        let line = format!(
            "true rate {:.2}% vs threshold 1%, {RUNS} runs polled after each of {POLLS} samples: \
             wrong `{}` in {seq} runs with the sequential gate ({:.1}%), in {wilson} with Wilson ({:.1}%)\n",
            p * 100.0,
            wrong.as_str(),
            rs * 100.0,
            rw * 100.0
        );
        eprint!("{line}");
        report.push_str(&line);
        assert!(rs <= limit, "{line}");
        assert!(rw > clearly_above, "{line}");
    }
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gate-simulation.txt"),
        report,
    )
    .unwrap();
}
