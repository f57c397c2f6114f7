//! The shadow memory budget: one process-wide bound on the bytes that shadows hold (request copy,
//! primary response copy, candidate and secondary answers, and the read buffers they are read
//! through) from capture until the comparison worker is done with them. What is counted is what
//! is allocated — a buffer's capacity, reserved before the allocation is made, and both blocks
//! while a growing buffer is copied — not only the bytes kept in it (`ingest::body::Buffer`). `max_in_flight` × `max_body_bytes` alone bounds nothing useful
//! (1024 × 4 copies × 4 MiB is 16 GiB); this does. A copy that would cross the budget is given up
//! — the live traffic is untouched — and the exchange is skipped as `memory_budget`.
//!
//! Lock-free: a reservation is one compare-and-swap on a shared counter, released on drop, so
//! whatever way an exchange ends (compared, abandoned, cancelled, panicked) its bytes come back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
}

/// No limit (what a source without a configured budget gets).
impl Default for Budget {
    fn default() -> Self {
        Self {
            limit: usize::MAX,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            ..Self::default()
        })
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Most bytes ever reserved at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// An empty reservation that can grow.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Some(self.clone()),
            bytes: 0,
        }
    }
}

/// Bytes held against a [`Budget`]; returned when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    /// `None`: no budget (unbounded), as in tests that build exchanges by hand.
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `n` more bytes; false (and nothing reserved) when that would cross the limit.
    pub fn grow(&mut self, n: usize) -> bool {
        let Some(b) = &self.budget else {
            return true;
        };
        match b
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= b.limit)
            }) {
            Ok(before) => {
                b.peak.fetch_max(before + n, Ordering::Relaxed);
                self.bytes += n;
                true
            }
            Err(_) => false,
        }
    }

    /// Gives `n` of this reservation's bytes back (at most what it holds): an allocation that
    /// was replaced or freed.
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.bytes);
        if let Some(b) = &self.budget
            && n > 0
        {
            b.used.fetch_sub(n, Ordering::AcqRel);
        }
        self.bytes -= n;
    }

    /// An empty reservation against the same budget (for a temporary allocation, such as a
    /// read buffer, given back on its own).
    pub fn sibling(&self) -> Reservation {
        Reservation {
            budget: self.budget.clone(),
            bytes: 0,
        }
    }

    /// Moves `other`'s bytes into this reservation (one handle for a whole exchange).
    pub fn absorb(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
        if self.budget.is_none() {
            self.budget = other.budget.take();
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = &self.budget
            && self.bytes > 0
        {
            b.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_come_back_on_drop() {
        let b = Budget::new(100);
        let mut r1 = b.reservation();
        assert!(r1.grow(60));
        let mut r2 = b.reservation();
        assert!(!r2.grow(41), "would cross the limit");
        assert!(r2.grow(40));
        assert_eq!((b.used(), b.peak()), (100, 100));
        r1.absorb(r2);
        assert_eq!((r1.bytes(), b.used()), (100, 100));
        drop(r1);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn released_and_sibling_bytes_come_back() {
        let b = Budget::new(100);
        let mut r = b.reservation();
        assert!(r.grow(60));
        r.release(20);
        assert_eq!((r.bytes(), b.used()), (40, 40));
        r.release(1000);
        assert_eq!((r.bytes(), b.used()), (0, 0));
        let mut s = r.sibling();
        assert!(s.grow(100) && !r.grow(1), "one budget for both");
        drop(s);
        assert!(r.grow(1));
    }

    #[test]
    fn concurrent_reservations_never_overshoot() {
        let b = Budget::new(1000);
        let held: Vec<Reservation> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for _ in 0..100 {
                            let mut r = b.reservation();
                            if r.grow(7) {
                                mine.push(r);
                            }
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        assert_eq!(held.len(), 1000 / 7);
        assert!(b.used() <= 1000);
        drop(held);
        assert_eq!(b.used(), 0);
    }
}
