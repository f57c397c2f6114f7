//! Buffers whose allocations are reserved against the shadow memory budget before they are made
//! (`shadow.max_buffered_bytes`, [`crate::pipeline::budget`]): the budget counts what is
//! allocated — capacity, and both blocks while bytes move from one to another — not only the
//! bytes kept.
//!
//! - [`Buffer`]: one contiguous block, for what must be parsed in place (an answer's head, the
//!   framing of a chunked body). Small: it doubles up to a ceiling of some tens of KiB.
//! - [`Collector`]: a body as it arrives, in segments of at most [`SEGMENT`] bytes, made one
//!   block of exactly its length once complete. A body whose length is declared and small is
//!   one exact block from the start.
//!
//! Why segments: a body that grows by doubling allocates ever larger contiguous blocks (to 4 MiB
//! and more) and copies into each; once glibc has freed a mapped block of that size it raises its
//! mmap threshold to it, and later blocks come from (and stay in) its heaps. Segments of 64 KiB
//! are reused from the allocator's free lists; the one large block is allocated only for a body
//! that ended within the cap, of exactly its size. With a candidate whose answers never end and
//! a 32 MiB budget, peak RSS over idle was 49–61 MiB with doubling and 43–55 MiB with segments
//! (`tests/hostile_candidates.rs`, loaded machine): the rest of the process, not the bodies, is
//! what remains above the budget.

use crate::pipeline::budget::Reservation;
use bytes::{Bytes, BytesMut};

/// Largest segment of a [`Collector`]: under glibc's smallest mmap threshold (128 KiB), so
/// segments come from, and go back to, the allocator's free lists.
pub const SEGMENT: usize = 64 * 1024;
/// First segment of a body of unknown length: a typical JSON answer fits.
const FIRST_SEGMENT: usize = 4 * 1024;

/// One contiguous block (see the module docs). It never grows implicitly: [`Buffer::make_room`]
/// first, then write at most that much (`read_buf` into [`Buffer::bytes_mut`] fills spare room
/// only, as long as there is some).
#[derive(Debug, Default)]
pub struct Buffer {
    bytes: BytesMut,
    /// The capacity of the block `bytes` lives in (its `capacity()` shrinks as it is advanced).
    block: usize,
    held: Reservation,
}

impl Buffer {
    /// An empty buffer (nothing allocated) reserving against `held`'s budget.
    pub fn new(held: Reservation) -> Self {
        Self {
            bytes: BytesMut::new(),
            block: 0,
            held,
        }
    }

    /// Room for `additional` more bytes: the bytes held move to the front of the block when
    /// that frees enough, else to a new block of at least twice the size, at most `ceiling`
    /// (unless they need more). False, with nothing allocated, when the budget cannot hold the
    /// new block next to the old one.
    pub fn make_room(&mut self, additional: usize, ceiling: usize) -> bool {
        let need = self.bytes.len().saturating_add(additional);
        if self.bytes.capacity() >= need || self.bytes.try_reclaim(additional) {
            return true;
        }
        let size = need.max(self.block.saturating_mul(2).min(ceiling));
        if !self.held.grow(size) {
            return false;
        }
        let mut bigger = BytesMut::with_capacity(size);
        bigger.extend_from_slice(&self.bytes);
        self.bytes = bigger;
        self.held.release(self.block);
        self.block = size;
        true
    }

    /// An empty collector reserving against the same budget.
    pub fn collector(&self) -> Collector {
        Collector::new(self.held.sibling())
    }

    /// An empty reservation against the same budget.
    pub fn sibling_reservation(&self) -> Reservation {
        self.held.sibling()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, to read into (within the room made) or to consume from the front.
    pub fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Room left without allocating.
    pub fn spare(&self) -> usize {
        self.bytes.capacity() - self.bytes.len()
    }
}

/// A body collected as it arrives (see the module docs). Written through
/// [`Collector::extend`], or read into through [`Collector::room`].
#[derive(Debug, Default)]
pub struct Collector {
    full: Vec<BytesMut>,
    /// Bytes in `full`.
    full_len: usize,
    tail: BytesMut,
    held: Reservation,
}

impl Collector {
    /// An empty collector (nothing allocated) reserving against `held`'s budget.
    pub fn new(held: Reservation) -> Self {
        Self {
            held,
            ..Self::default()
        }
    }

    /// A collector for a body of exactly `n` bytes: one block of that size, made now. `None`
    /// when the budget cannot hold it.
    pub fn exact(mut held: Reservation, n: usize) -> Option<Self> {
        if !held.grow(n) {
            return None;
        }
        Some(Self {
            tail: BytesMut::with_capacity(n),
            held,
            ..Self::default()
        })
    }

    /// Bytes collected.
    pub fn len(&self) -> usize {
        self.full_len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`; false when the budget cannot hold a segment it needs.
    pub fn extend(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let Some((tail, spare)) = self.room() else {
                return false;
            };
            let n = spare.min(data.len());
            tail.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        true
    }

    /// The segment to write into and how much room it has (at least one byte): a new segment,
    /// reserved first, when the current one is full. Write at most that much — read into it
    /// through `BufMut::limit` — so that it never grows. `None` when the budget cannot hold the
    /// new segment.
    pub fn room(&mut self) -> Option<(&mut BytesMut, usize)> {
        if self.tail.len() == self.tail.capacity() {
            let size = self.len().clamp(FIRST_SEGMENT, SEGMENT);
            if !self.held.grow(size) {
                return None;
            }
            let done = std::mem::replace(&mut self.tail, BytesMut::with_capacity(size));
            if !done.is_empty() {
                self.full_len += done.len();
                self.full.push(done);
            }
        }
        let spare = self.tail.capacity() - self.tail.len();
        Some((&mut self.tail, spare))
    }

    /// The body as one block of exactly its length, and the reservation of that block. The
    /// segments are copied into it (both counted while they are) unless there is only one and
    /// it is exactly full. `None` when the budget cannot hold the copy.
    pub fn freeze(mut self) -> Option<(Bytes, Reservation)> {
        if self.full.is_empty() && self.tail.len() == self.tail.capacity() {
            return Some((self.tail.freeze(), self.held));
        }
        let len = self.len();
        if !self.held.grow(len) {
            return None;
        }
        let mut one = BytesMut::with_capacity(len);
        let mut segments = 0;
        for s in self.full.drain(..).chain(std::iter::once(self.tail)) {
            segments += s.capacity();
            one.extend_from_slice(&s);
        }
        self.held.release(segments);
        Some((one.freeze(), self.held))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pipeline::budget::Budget;

    #[test]
    fn a_buffer_reserves_its_block_before_allocating_and_both_while_it_grows() {
        let budget = Budget::new(10_000);
        let mut b = Buffer::new(budget.reservation());
        assert!(b.make_room(1000, 8192));
        assert_eq!((b.spare(), budget.used()), (1000, 1000));
        b.bytes_mut().extend_from_slice(&[7; 1000]);
        // Doubling: a block of 2000 while the old one of 1000 is copied.
        assert!(b.make_room(10, 8192));
        assert_eq!((budget.used(), budget.peak()), (2000, 3000));
        assert_eq!(b.as_bytes(), &[7; 1000][..]);
        // Consumed bytes make room without an allocation.
        let n = b.len();
        bytes::Buf::advance(b.bytes_mut(), n);
        assert!(b.make_room(1500, 8192));
        assert_eq!(budget.used(), 2000);
        // A block the budget cannot hold is not made, and nothing changes.
        assert!(!b.make_room(9000, 20_000));
        assert_eq!((budget.used(), b.spare()), (2000, 2000));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_collector_reserves_segments_then_one_exact_block() {
        let budget = Budget::new(1 << 20);
        let mut c = Collector::new(budget.reservation());
        assert!(c.extend(&[1; 100]));
        assert_eq!(budget.used(), FIRST_SEGMENT);
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        assert!(c.extend(&body[100..]));
        assert_eq!(c.len(), 200_000);
        let segments = budget.used();
        assert!(
            (200_000..200_000 + SEGMENT).contains(&segments),
            "{segments}"
        );
        let (bytes, held) = c.freeze().unwrap();
        assert_eq!(&bytes[100..], &body[100..]);
        // The copy was counted next to the segments; then only the exact block is held.
        assert_eq!((held.bytes(), budget.used()), (200_000, 200_000));
        assert_eq!(budget.peak(), segments + 200_000);
        drop((bytes, held));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_declared_length_is_one_block_and_over_budget_allocates_nothing() {
        let budget = Budget::new(100);
        assert!(Collector::exact(budget.reservation(), 101).is_none());
        assert_eq!(budget.used(), 0);
        let mut c = Collector::exact(budget.reservation(), 60).unwrap();
        assert!(c.extend(&[3; 60]));
        let (bytes, held) = c.freeze().unwrap();
        assert_eq!((bytes.len(), held.bytes(), budget.peak()), (60, 60, 60));
        // A collector that cannot get its next segment says so and keeps what it had.
        let mut c = Collector::new(budget.reservation());
        assert!(!c.extend(&[1; 10]));
        assert_eq!(budget.used(), 60);
    }
}
