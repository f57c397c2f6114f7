//! Shedding shadows when the proxy's own I/O threads are saturated.
//!
//! Below saturation a shadow costs the live traffic nothing it can measure. At saturation every
//! shadow sent is CPU taken from forwarding: with a fast candidate the proxy would shadow every
//! request and forward about half as many as it could, so the primary's capacity would pay for
//! the comparison. The in-flight cap does not help there (fast shadows never fill it), so this
//! module watches the cause instead: how busy tokio's worker threads are.
//!
//! [`Overload::run`] samples the workers' busy time every [`TICK`] and feeds the busy share of
//! the cores the process may run on to a [`Controller`]. Once that share stays above
//! `shadow.overload.busy` for `shadow.overload.after`, the fraction of eligible requests admitted
//! as shadows is halved every tick; once it has been back below for three ticks, it grows by a
//! twentieth per tick (multiplicative decrease, additive increase: it settles where shadows fit,
//! a brief spike never sheds, and a one-tick dip at saturation lets no burst through). Shed requests are forwarded as always and skipped `overload`, counted like every
//! other skip. The decision on the request path is one atomic load and, while shedding, one
//! random number.

use super::config::OverloadConfig;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How often the busy share is sampled.
pub const TICK: Duration = Duration::from_millis(100);

/// Admission below this fraction becomes zero: a trickle of shadows at saturation would still
/// cost forwarding, and a clean zero is what an operator reads on the gauge.
const FLOOR: f64 = 1.0 / 64.0;
/// Added to the admitted fraction per tick below the threshold, once it has stayed below for
/// [`COOL_TICKS`] (full recovery from zero in about two seconds).
const RECOVER: f64 = 0.05;
/// Ticks the share must stay below the threshold before admission grows again. At saturation
/// the share dips below the threshold now and then for a single tick; growing on each dip let a
/// burst of shadows through every time (1,024 at once against a slow candidate, whose answers
/// then arrived together), which cost forwarding what shedding was meant to save.
const COOL_TICKS: u32 = 3;
/// Fixed-point scale of the fractions kept in atomics.
const ONE: u32 = 1 << 16;

/// The pure decision: busy samples in, admitted fraction out.
#[derive(Debug, Clone)]
pub struct Controller {
    threshold: f64,
    after: Duration,
    hot_for: Duration,
    cool_ticks: u32,
    admit: f64,
}

impl Controller {
    pub fn new(cfg: &OverloadConfig) -> Self {
        Self {
            threshold: cfg.busy,
            after: cfg.after,
            hot_for: Duration::ZERO,
            cool_ticks: 0,
            admit: 1.0,
        }
    }

    /// Feeds one sample: `busy` is the workers' busy share (0–1) over the last `dt`.
    /// Returns the fraction of eligible requests to shadow from now on.
    pub fn step(&mut self, busy: f64, dt: Duration) -> f64 {
        // Strictly above: a threshold of 100% never sheds (the share is clamped to 1).
        if busy > self.threshold {
            self.cool_ticks = 0;
            self.hot_for += dt;
            if self.hot_for >= self.after {
                self.admit *= 0.5;
                if self.admit < FLOOR {
                    self.admit = 0.0;
                }
            }
        } else {
            self.hot_for = Duration::ZERO;
            self.cool_ticks = self.cool_ticks.saturating_add(1);
            if self.cool_ticks >= COOL_TICKS {
                self.admit = (self.admit + RECOVER).min(1.0);
            }
        }
        self.admit
    }
}

/// What the request path and `/metrics` read; written by [`Overload::run`].
#[derive(Debug)]
pub struct Overload {
    admit: AtomicU32,
    busy: AtomicU32,
}

impl Default for Overload {
    fn default() -> Self {
        Self {
            admit: AtomicU32::new(ONE),
            busy: AtomicU32::new(0),
        }
    }
}

impl Overload {
    /// Whether this eligible request may be shadowed.
    pub fn admit(&self) -> bool {
        let a = self.admit.load(Ordering::Relaxed);
        a >= ONE || (a > 0 && rand::random::<u32>() % ONE < a)
    }

    /// The fraction of eligible requests admitted now (1 when not shedding).
    pub fn admit_ratio(&self) -> f64 {
        f64::from(self.admit.load(Ordering::Relaxed)) / f64::from(ONE)
    }

    /// The workers' busy share over the last tick.
    pub fn busy_ratio(&self) -> f64 {
        f64::from(self.busy.load(Ordering::Relaxed)) / f64::from(ONE)
    }

    fn publish(&self, busy: f64, admit: f64) {
        self.busy.store(fixed(busy), Ordering::Relaxed);
        self.admit.store(fixed(admit), Ordering::Relaxed);
    }

    /// Samples the current runtime until `cancel` fires. Spawn it on the proxy's runtime.
    pub async fn run(
        self: std::sync::Arc<Self>,
        cfg: OverloadConfig,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let metrics = tokio::runtime::Handle::current().metrics();
        let workers = metrics.num_workers();
        // Busy time is per worker thread, but workers pinned to fewer cores than there are
        // workers cannot all be busy at once: capacity is what the process may actually use.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let capacity = workers.min(cores).max(1) as f64;
        let busy_total = || {
            (0..workers)
                .map(|w| metrics.worker_total_busy_duration(w))
                .sum::<Duration>()
        };
        let mut controller = Controller::new(&cfg);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last_at, mut last_busy) = (Instant::now(), busy_total());
        let mut shedding = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let (now, busy) = (Instant::now(), busy_total());
            let dt = now.duration_since(last_at);
            if dt.is_zero() {
                continue;
            }
            let share = ((busy.saturating_sub(last_busy)).as_secs_f64()
                / (dt.as_secs_f64() * capacity))
                .clamp(0.0, 1.0);
            (last_at, last_busy) = (now, busy);
            let admit = controller.step(share, dt);
            self.publish(share, admit);
            if (admit < 1.0) != shedding {
                shedding = admit < 1.0;
                if shedding {
                    tracing::warn!(
                        busy = share,
                        admit,
                        "I/O threads saturated: shedding shadows"
                    );
                } else {
                    tracing::info!(
                        busy = share,
                        "I/O threads below the threshold: shadowing all"
                    );
                }
            }
        }
    }
}

fn fixed(x: f64) -> u32 {
    (x.clamp(0.0, 1.0) * f64::from(ONE)).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(busy: f64, after_ms: u64) -> OverloadConfig {
        OverloadConfig {
            busy,
            after: Duration::from_millis(after_ms),
        }
    }

    /// Feeds `ticks` samples of `busy`; the admitted fraction after each.
    fn feed(c: &mut Controller, busy: f64, ticks: usize) -> Vec<f64> {
        (0..ticks).map(|_| c.step(busy, TICK)).collect()
    }

    fn all_admitted(admits: &[f64]) -> bool {
        admits.iter().all(|&a| a == 1.0)
    }

    #[test]
    fn below_the_threshold_everything_is_shadowed() {
        let mut c = Controller::new(&cfg(0.9, 1000));
        assert!(all_admitted(&feed(&mut c, 0.9, 100)));
    }

    #[test]
    fn a_one_tick_dip_at_saturation_lets_nothing_through() {
        let mut c = Controller::new(&cfg(0.9, 100));
        assert_eq!(feed(&mut c, 1.0, 11).last(), Some(&0.0));
        for _ in 0..20 {
            assert_eq!(c.step(0.85, TICK), 0.0);
            assert_eq!(c.step(0.85, TICK), 0.0);
            assert_eq!(c.step(1.0, TICK), 0.0);
        }
    }

    #[test]
    fn a_spike_shorter_than_after_sheds_nothing() {
        let mut c = Controller::new(&cfg(0.9, 1000));
        assert!(all_admitted(&feed(&mut c, 1.0, 9)));
        // One quiet tick resets the clock: nine more hot ticks still shed nothing.
        assert_eq!(c.step(0.5, TICK), 1.0);
        assert!(all_admitted(&feed(&mut c, 1.0, 9)));
    }

    #[test]
    fn sustained_saturation_halves_to_zero_then_recovers_by_twentieths() {
        let mut c = Controller::new(&cfg(0.9, 300));
        assert_eq!(c.step(0.95, TICK), 1.0);
        assert_eq!(c.step(0.95, TICK), 1.0);
        assert_eq!(c.step(0.95, TICK), 0.5);
        assert_eq!(c.step(0.95, TICK), 0.25);
        let halvings = feed(&mut c, 1.0, 5);
        // 1/64 is the floor: below it, nothing is shadowed.
        assert_eq!(halvings, [0.125, 0.0625, 0.03125, 0.015625, 0.0]);
        // Three quiet ticks before it grows, then a twentieth per tick.
        let recovered = feed(&mut c, 0.2, 23);
        assert_eq!(&recovered[..2], &[0.0, 0.0]);
        assert!((recovered[2] - 0.05).abs() < 1e-9, "{recovered:?}");
        assert!((recovered[11] - 0.5).abs() < 1e-9, "{recovered:?}");
        assert!(recovered[20] < 1.0 && recovered[21] == 1.0, "{recovered:?}");
    }

    #[test]
    fn a_threshold_of_one_never_sheds() {
        let mut c = Controller::new(&cfg(1.0, 0));
        assert!(all_admitted(&feed(&mut c, 1.0, 50)));
    }

    #[test]
    fn admission_follows_the_published_fraction() {
        let o = Overload::default();
        assert!((0..1000).all(|_| o.admit()));
        o.publish(1.0, 0.0);
        assert!((0..1000).all(|_| !o.admit()));
        assert_eq!(o.busy_ratio(), 1.0);
        o.publish(1.0, 0.25);
        let admitted = (0..20_000).filter(|_| o.admit()).count();
        // Binomial(20 000, 0.25): mean 5 000, sd 61; ±500 is over 8 sd.
        assert!((4_500..5_500).contains(&admitted), "{admitted}");
    }
}
