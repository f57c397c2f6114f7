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
