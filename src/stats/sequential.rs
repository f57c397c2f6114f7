//! The gate's anytime-valid 95% confidence sequence for a divergence rate (docs/gate.md).
//!
//! Robbins' beta-binomial mixture (Robbins 1970; Lai 1976; Howard, Ramdas, McAuliffe & Sekhon
//! 2021, "conjugate mixture"). After `k` divergent exchanges out of `n`, for a candidate rate `p`:
//!
//! ```text
//! M_n(p) = B(a + k, b + n − k) / B(a, b)  /  ( p^k (1 − p)^(n − k) )
//! ```
//!
//! is a nonnegative martingale with `M_0 = 1` when `p` is the true rate, so by Ville's inequality
//! `P(∃ n: M_n(p) ≥ 1/α) ≤ α`. The set `C_n = { p : M_n(p) < 1/α }` (α = 0.05) therefore holds the
//! true rate at **every** `n` at once with probability ≥ 95%: a gate judged on it may be polled
//! after every exchange, for ever, and is wrong (passes a rate above its threshold, or fails one
//! at or below it) with probability ≤ 5% over the whole run.
//!
//! The mixing distribution Beta(a, b) does not affect that guarantee, only how soon the sequence
//! decides. It is centred on the threshold θ being judged, with the smaller parameter 1:
//! `Beta(1, 1/θ − 1)` for θ ≤ ½ (`Beta(θ/(1 − θ), 1)` above), which decides near the threshold
//! 1.5–2× sooner than a flat Beta(1, 1) at θ = 1% (numbers in docs/gate.md).
//!
//! Everything is a function of `(k, n)` alone, in O(1): three `ln Γ` for the verdict, and a
//! bisection without `ln Γ` for the interval.

/// Error bound of the sequence: 95%.
pub const ALPHA: f64 = 0.05;

/// Where a threshold lies with respect to the confidence set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The whole set is at or under the threshold.
    Below,
    /// The whole set is above the threshold.
    Above,
    /// The threshold is inside the set: the data cannot tell yet.
    Inside,
}

/// The confidence sequence tuned for one threshold.
#[derive(Debug, Clone, Copy)]
pub struct Sequence {
    threshold: f64,
    a: f64,
    b: f64,
    ln_beta_ab: f64,
}

impl Sequence {
    /// The sequence whose mixing distribution is centred on `threshold` (clamped into
    /// [1e-6, 1 − 1e-6] for the prior only; the test is always at the threshold itself).
    pub fn new(threshold: f64) -> Self {
        let m = threshold.clamp(1e-6, 1.0 - 1e-6);
        let (a, b) = if m <= 0.5 {
            (1.0, (1.0 - m) / m)
        } else {
            (m / (1.0 - m), 1.0)
        };
        Self {
            threshold,
            a,
            b,
            ln_beta_ab: ln_beta(a, b),
        }
    }

    /// `ln` of the mixture's marginal likelihood, `ln B(a + k, b + n − k) − ln B(a, b)`: the
    /// part of `ln M_n(p)` that does not depend on `p`.
    fn ln_mixture(&self, k: u64, n: u64) -> f64 {
        let k = k.min(n);
        ln_beta(self.a + k as f64, self.b + (n - k) as f64) - self.ln_beta_ab
    }

    /// `ln M_n(p)` given the mixture part.
    fn ln_martingale(mix: f64, k: u64, n: u64, p: f64) -> f64 {
        let k = k.min(n);
        // 0 · ln 0 is 0 here (no divergent exchange says nothing against p = 0).
        let term = |count: u64, q: f64| {
            if count == 0 {
                0.0
            } else {
                count as f64 * q.ln()
            }
        };
        mix - term(k, p) - term(n - k, 1.0 - p)
    }

    /// Where the threshold lies with respect to the confidence set after `k` of `n`: O(1).
    pub fn side(&self, k: u64, n: u64) -> Side {
        if n == 0 {
            return Side::Inside;
        }
        let ln_m = Self::ln_martingale(self.ln_mixture(k, n), k, n, self.threshold);
        // `M_n` is smallest at p̂ = k/n and at most 1 there, so the set always holds p̂: a
        // threshold outside it lies on the side away from p̂.
        if ln_m < (1.0 / ALPHA).ln() {
            Side::Inside
        } else if (k.min(n) as f64) < self.threshold * n as f64 {
            Side::Below
        } else {
            Side::Above
        }
    }

    /// The confidence set after `k` of `n`, `[lo, hi]` (to 1e-12); `[0, 1]` with no sample.
    pub fn interval(&self, k: u64, n: u64) -> (f64, f64) {
        if n == 0 {
            return (0.0, 1.0);
        }
        let k = k.min(n);
        let mix = self.ln_mixture(k, n);
        let bound = (1.0 / ALPHA).ln();
        let inside = |p: f64| Self::ln_martingale(mix, k, n, p) < bound;
        let p_hat = k as f64 / n as f64;
        // `ln M_n(p)` is convex in p with its minimum at p̂: bisect each side.
        let edge = |mut out: f64, mut inn: f64| {
            for _ in 0..60 {
                let mid = 0.5 * (out + inn);
                if inside(mid) {
                    inn = mid;
                } else {
                    out = mid;
                }
            }
            inn
        };
        let lo = if k == 0 || inside(0.0) {
            0.0
        } else {
            edge(0.0, p_hat)
        };
        let hi = if k == n || inside(1.0) {
            1.0
        } else {
            edge(1.0, p_hat)
        };
        (lo, hi)
    }
}

/// `ln B(x, y) = ln Γ(x) + ln Γ(y) − ln Γ(x + y)`.
fn ln_beta(x: f64, y: f64) -> f64 {
    ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y)
}

/// `ln Γ(x)` for x > 0: Stirling's series from 20 up (error < 2e-15 relative), shifted up by the
/// recurrence Γ(x + 1) = x Γ(x) below. (The standard library's is not stable.)
pub fn ln_gamma(x: f64) -> f64 {
    let mut x = x;
    let mut shift = 1.0;
    while x < 20.0 {
        shift *= x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)));
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + series - shift.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_reference_values() {
        // Python's math.lgamma (C libm) for each x.
        for (x, want) in [
            (0.5, 0.572_364_942_924_700_4),
            (1.0, 0.0),
            (1.5, -0.120_782_237_635_245_43),
            (2.5, 0.284_682_870_472_919_6),
            (7.3, 7.147_892_523_022_248),
            (10.0, 12.801_827_480_081_467),
            (12.5, 18.734_347_511_936_45),
            (100.5, 361.435_540_467_777_6),
            (12_345.678, 103_959.919_905_546_06),
            (1e6, 12_815_504.569_147_611),
            (3e7, 486_501_230.499_377_5),
        ] {
            let got = ln_gamma(x);
            assert!(
                (got - want).abs() <= 1e-13 * want.abs().max(1.0),
                "ln Γ({x}) = {got}, want {want}"
            );
        }
    }

    /// The interval and the side agree, and the interval is the set the martingale defines:
    /// just inside each bound the martingale is under 1/α, just outside at or above it.
    #[test]
    fn the_interval_is_the_set_under_one_over_alpha() {
        let s = Sequence::new(0.01);
        for (k, n) in [
            (0, 1000),
            (3, 1000),
            (10, 1000),
            (50, 1000),
            (142, 142),
            (1, 3),
        ] {
            let (lo, hi) = s.interval(k, n);
            let mix = s.ln_mixture(k, n);
            let m = |p: f64| Sequence::ln_martingale(mix, k, n, p);
            let bound = (1.0 / ALPHA).ln();
            assert!(lo <= k as f64 / n as f64 && k as f64 / n as f64 <= hi);
            if lo > 0.0 {
                assert!(
                    m(lo + 1e-9) < bound && m(lo - 1e-9) >= bound,
                    "{k}/{n} lo {lo}"
                );
            }
            if hi < 1.0 {
                assert!(
                    m(hi - 1e-9) < bound && m(hi + 1e-9) >= bound,
                    "{k}/{n} hi {hi}"
                );
            }
            let side = match (hi <= 0.01, lo > 0.01) {
                (true, _) => Side::Below,
                (_, true) => Side::Above,
                _ => Side::Inside,
            };
            assert_eq!(s.side(k, n), side, "{k}/{n}: [{lo}, {hi}]");
        }
    }

    #[test]
    fn it_is_wider_than_wilson_and_decides_overwhelming_evidence_at_once() {
        let s = Sequence::new(0.01);
        // 0/1000: Wilson's upper bound is 0.38%; the sequence pays for being valid at every n.
        let (_, hi) = s.interval(0, 1000);
        assert!(hi > 0.0038 && hi < 0.01, "{hi}");
        assert_eq!(s.side(0, 1000), Side::Below);
        assert_eq!(s.side(0, 300), Side::Inside);
        // 142 of 142 against 1%: decided long before.
        assert_eq!(s.side(142, 142), Side::Above);
        assert_eq!(s.side(4, 4), Side::Above);
        // Exactly at the threshold: never decided.
        assert_eq!(s.side(1000, 100_000), Side::Inside);
        // Thresholds 0 and 1 are judged, not divided by.
        assert_eq!(Sequence::new(0.0).side(1, 10), Side::Above);
        assert_eq!(Sequence::new(0.0).side(0, 1_000_000), Side::Inside);
        assert_eq!(Sequence::new(1.0).side(5, 10), Side::Below);
    }
}
