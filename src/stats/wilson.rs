//! The Wilson score interval for a binomial proportion: unlike the normal ("Wald") interval it
//! stays inside [0, 1] and is honest at 0/n and n/n, which is exactly where a release gate lives
//! (a candidate with no divergence yet).

/// z for a two-sided 95% interval (the 0.975 quantile of the standard normal).
pub const Z95: f64 = 1.959_963_984_540_054;

/// The 95% Wilson interval of `k` successes in `n` trials; `(0, 1)` when `n == 0` (we know
/// nothing).
pub fn wilson95(k: u64, n: u64) -> (f64, f64) {
    wilson(k, n, Z95)
}

pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let k = k.min(n);
    let n_f = n as f64;
    let p = k as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let centre = p + z2 / (2.0 * n_f);
    let margin = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    let lo = if k == 0 {
        0.0
    } else {
        ((centre - margin) / denom).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        ((centre + margin) / denom).min(1.0)
    };
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Expected bounds computed independently: the Wilson interval is the set of p with
    /// (p̂ − p)² ≤ z²·p(1 − p)/n, i.e. the roots of (1 + z²/n)p² − (2p̂ + z²/n)p + p̂² = 0, solved with
    /// the quadratic formula (not the centre ± margin form the code uses). Published tables agree:
    /// 0/10 → [0, 0.2775], 5/10 → [0.2366, 0.7634], 50/1000 → [0.0381, 0.0653], 1000/1000 → [0.9962, 1].
    #[test]
    fn wilson_bounds_match_known_values() {
        let roots = |k: f64, n: f64| {
            let z2 = Z95 * Z95;
            let p = k / n;
            let (a, b, c) = (1.0 + z2 / n, -(2.0 * p + z2 / n), p * p);
            let d = (b * b - 4.0 * a * c).sqrt();
            (
                ((-b - d) / (2.0 * a)).max(0.0),
                ((-b + d) / (2.0 * a)).min(1.0),
            )
        };
        for (k, n, lo, hi) in [
            (0, 10, 0.0, 0.277_532_799_862_889_2),
            (5, 10, 0.236_593_090_512_564, 0.763_406_909_487_436),
            (50, 1000, 0.038_130_262_392_748_8, 0.065_313_820_244_250_82),
            (1000, 1000, 0.996_173_241_514_361_7, 1.0),
            (1, 3, 0.061_491_944_720_396_215, 0.792_340_399_197_952_3),
        ] {
            let (a, b) = wilson95(k, n);
            assert!(
                close(a, lo) && close(b, hi),
                "{k}/{n}: got [{a}, {b}], want [{lo}, {hi}]"
            );
            let (ra, rb) = roots(k as f64, n as f64);
            assert!(
                close(a, ra) && close(b, rb),
                "{k}/{n}: quadratic roots [{ra}, {rb}]"
            );
        }
        assert_eq!(wilson95(0, 0), (0.0, 1.0));
    }
}
