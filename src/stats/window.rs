//! Time in the statistics: the clock ([`Clock`], swappable so expiry is testable without
//! waiting), the span a query covers ([`Window`]) and the bucketed sliding window each endpoint
//! keeps ([`Ring`]).
//!
//! An observation lands in the bucket of the clock's current time (not the exchange's timestamp:
//! replayed traffic carries old timestamps, and "the last 15 minutes" means of observation).
//! Time is cut into rotations (`epoch` = milliseconds since 1970 / bucket width); the ring has
//! `ceil(window / bucket)` buckets and rotation `e` lives in bucket `e % len`, so a bucket from
//! an older rotation is reset when reused. A query for a window of `w` includes the current
//! bucket and the `ceil(w / bucket) − 1` before it: the window is rounded up to whole buckets and
//! the current bucket is partial.

use super::counts::{Counts, FieldCounts};
use super::latency::LatencySet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time source, so window expiry is testable without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        let ms = start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Self {
            ms: AtomicU64::new(u64::try_from(ms).unwrap_or(u64::MAX)),
        }
    }

    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_add(add, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.ms.load(Ordering::SeqCst))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("invalid window {0:?}: write a duration (15m, 1h) or \"all\" (since start)")]
    Invalid(String),
    #[error(
        "window {asked} is longer than the history kept ({kept}); ask for at most {kept} or \"all\""
    )]
    TooLong { asked: String, kept: String },
}

/// The time span a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `d`, rounded up to whole buckets.
    Last(Duration),
    /// Since the process started.
    All,
}

impl Window {
    pub fn parse(s: &str) -> Result<Window, WindowError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(Window::All);
        }
        match crate::units::parse_duration(t) {
            Ok(d) if !d.is_zero() => Ok(Window::Last(d)),
            _ => Err(WindowError::Invalid(s.to_string())),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Window::All => "all".to_string(),
            Window::Last(d) => format_duration(*d),
        }
    }
}

/// `15m`, `1h`, `90s`: the shortest exact form in the units flags accept.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= n && ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

/// The rotation `t` falls in, for buckets `bucket_ms` wide.
pub(super) fn epoch_of(t: SystemTime, bucket_ms: u64) -> u64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX) / bucket_ms
}

/// Buckets of `bucket_ms` needed to cover `d`: rounded up, at least one.
pub(super) fn buckets_in(d: Duration, bucket_ms: u64) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .div_ceil(bucket_ms)
        .max(1)
}

/// What one endpoint counted during one rotation.
pub(super) struct Bucket {
    /// Which rotation this bucket holds; `u64::MAX`: never used.
    pub(super) epoch: u64,
    pub(super) counts: Counts,
    pub(super) fields: FieldCounts,
    /// Allocated on first use, at the window's (lower) precision: most endpoint-minutes of a
    /// quiet endpoint never need one.
    pub(super) latency: Option<Box<LatencySet>>,
    /// Exchanges per signature in this bucket (at most `max_signatures`): what an
    /// acknowledgement makes *expected* over a sliding window (`triage`).
    pub(super) signatures: std::collections::HashMap<Box<str>, u64>,
}

impl Bucket {
    fn empty() -> Self {
        Self {
            epoch: u64::MAX,
            counts: Counts::default(),
            fields: FieldCounts::default(),
            latency: None,
            signatures: std::collections::HashMap::new(),
        }
    }

    fn reset(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.counts = Counts::default();
        self.fields.map.clear();
        self.signatures.clear();
        if let Some(l) = &mut self.latency {
            l.reset();
        }
    }

    fn holds(&self, oldest: u64, now_epoch: u64) -> bool {
        self.epoch != u64::MAX && self.epoch >= oldest && self.epoch <= now_epoch
    }
}

/// One endpoint's sliding window: a ring of buckets, rotation `e` in bucket `e % len`.
pub(super) struct Ring {
    buckets: Box<[Bucket]>,
}

impl Ring {
    pub(super) fn new(len: usize) -> Self {
        Self {
            buckets: (0..len.max(1)).map(|_| Bucket::empty()).collect(),
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// The bucket of the current rotation, reset first if it still holds an older one.
    pub(super) fn current(&mut self, epoch: u64) -> &mut Bucket {
        let n = self.len();
        let b = &mut self.buckets[(epoch % n) as usize];
        if b.epoch != epoch {
            b.reset(epoch);
        }
        b
    }

    /// The bucket of a past rotation `epoch` (merging another process's interval), or `None`
    /// when that rotation has left the window: older than the ring, or its slot already holds a
    /// newer rotation. `epoch` must not be after `now_epoch`.
    pub(super) fn past(&mut self, epoch: u64, now_epoch: u64) -> Option<&mut Bucket> {
        let n = self.len();
        if now_epoch - epoch >= n {
            return None;
        }
        let b = &mut self.buckets[(epoch % n) as usize];
        if b.epoch != epoch {
            if b.epoch != u64::MAX && b.epoch > epoch {
                return None;
            }
            b.reset(epoch);
        }
        Some(b)
    }

    /// The buckets a window of `d` covers at rotation `now_epoch` (the current one included).
    pub(super) fn covering(
        &self,
        d: Duration,
        bucket_ms: u64,
        now_epoch: u64,
    ) -> impl Iterator<Item = &Bucket> {
        let oldest = now_epoch.saturating_sub(buckets_in(d, bucket_ms) - 1);
        self.buckets
            .iter()
            .filter(move |b| b.holds(oldest, now_epoch))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn window_labels() {
        assert_eq!(Window::parse("15m").unwrap().label(), "15m");
        assert_eq!(Window::parse("60m").unwrap().label(), "1h");
        assert_eq!(Window::parse("90s").unwrap().label(), "90s");
        assert_eq!(Window::parse("all").unwrap(), Window::All);
        assert!(Window::parse("0s").is_err());
        assert!(Window::parse("soon").is_err());
    }
}
