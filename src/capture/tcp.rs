//! One direction of a TCP connection, reassembled into an in-order byte stream. Pure: segments
//! in (with their capture timestamps), bytes out; no I/O, no clock.
//!
//! Sequence numbers are unwrapped to 64-bit stream offsets relative to the byte at `next`, so a
//! stream may cross the 2³² wrap any number of times. Out-of-order segments wait in `pending`
//! (bounded); the first copy of a byte wins (retransmissions and overlaps are trimmed). A hole
//! that is not filled in time (the reorder window, the buffer bound, or the end of the stream)
//! becomes a *gap*: the stream skips it and records where, so the HTTP reader never parses
//! across missing bytes.

use std::collections::{BTreeMap, VecDeque};

/// Where a segment's bytes start in the stream, when it was captured and what it acknowledged
/// of the other direction (its raw ACK field): the pairing uses both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegMeta {
    /// Read position (gaps excluded) of the segment's first delivered byte.
    pub vpos: u64,
    /// Stream offset (sequence space) of that byte.
    pub offset: u64,
    pub ts_us: i64,
    pub ack: Option<u32>,
}

/// One TCP segment of this direction.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
    pub ts_us: i64,
}

#[derive(Debug)]
struct Held {
    data: Vec<u8>,
    ts_us: i64,
    ack: Option<u32>,
}

/// One direction's reassembly state.
#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number at stream offset `next`; `None` until the first segment.
    seq_next: Option<u32>,
    /// Stream offset of the next in-order byte.
    next: u64,
    /// Out-of-order segments by stream offset.
    pending: BTreeMap<u64, Held>,
    pending_bytes: usize,
    /// When the oldest hole was first seen waiting (capture time).
    hole_since: Option<i64>,
    /// Delivered, unconsumed bytes; `data[0]` is at read position `consumed`. Read positions
    /// count delivered bytes only, so a skipped gap leaves no hole in `data`.
    data: Vec<u8>,
    consumed: u64,
    /// Read position after the last delivered byte.
    delivered: u64,
    /// Metadata of delivered segments, ascending; the first covers `consumed`.
    metas: VecDeque<SegMeta>,
    /// Read positions where bytes are missing just before (a gap was skipped), ascending.
    gaps: VecDeque<u64>,
    fin_at: Option<u64>,
    rst: bool,
    /// Segments that brought nothing new (retransmissions, duplicates).
    pub retransmitted: u64,
}

impl Stream {
    /// Stream offset of a sequence number, relative to `next` (within ±2³¹ of it).
    pub fn offset_of(&self, seq: u32) -> Option<u64> {
        let base = self.seq_next?;
        let rel = i64::from(seq.wrapping_sub(base) as i32);
        u64::try_from(self.next as i64 + rel).ok()
    }

    /// Feeds one segment. `max_buffered` bounds this direction's delivered-but-unread and
    /// out-of-order bytes together; beyond it the oldest hole becomes a gap.
    pub fn push(&mut self, seg: &Segment<'_>, max_buffered: usize) {
        if self.rst {
            return;
        }
        let data_seq = if seg.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if self.seq_next.is_none() {
            if !seg.syn && seg.payload.is_empty() && !seg.fin && !seg.rst {
                // A bare ACK before anything else says nothing about where data starts.
                return;
            }
            // Without a SYN, the first segment seen starts the stream (a capture that began
            // mid-connection).
            self.seq_next = Some(data_seq);
        }
        if seg.rst {
            self.rst = true;
            return;
        }
        let Some(start) = self.offset_of(data_seq) else {
            return;
        };
        let end = start + seg.payload.len() as u64;
        if seg.fin && self.fin_at.is_none() {
            self.fin_at = Some(end);
        }
        if seg.payload.is_empty() {
            return;
        }
        if end <= self.next {
            self.retransmitted += 1;
            return;
        }
        if start > self.next {
            self.hold(start, seg);
        } else {
            let skip = (self.next - start) as usize;
            self.deliver(&seg.payload[skip..], seg.ts_us, seg.ack);
            self.drain_pending();
        }
        if self.buffered() > max_buffered {
            self.skip_hole();
        }
    }

    fn hold(&mut self, start: u64, seg: &Segment<'_>) {
        if self.hole_since.is_none() {
            self.hole_since = Some(seg.ts_us);
        }
        let longer = self
            .pending
            .get(&start)
            .is_none_or(|h| h.data.len() < seg.payload.len());
        if longer {
            let old = self.pending.insert(
                start,
                Held {
                    data: seg.payload.to_vec(),
                    ts_us: seg.ts_us,
                    ack: seg.ack,
                },
            );
            self.pending_bytes += seg.payload.len();
            if let Some(o) = old {
                self.pending_bytes -= o.data.len();
            }
        } else {
            self.retransmitted += 1;
        }
    }

    fn deliver(&mut self, bytes: &[u8], ts_us: i64, ack: Option<u32>) {
        self.metas.push_back(SegMeta {
            vpos: self.delivered,
            offset: self.next,
            ts_us,
            ack,
        });
        self.data.extend_from_slice(bytes);
        self.next += bytes.len() as u64;
        self.delivered += bytes.len() as u64;
        if let Some(s) = self.seq_next {
            self.seq_next = Some(s.wrapping_add(bytes.len() as u32));
        }
    }

    fn drain_pending(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let held = entry.remove();
            self.pending_bytes -= held.data.len();
            let end = start + held.data.len() as u64;
            if end <= self.next {
                self.retransmitted += 1;
                continue;
            }
            let skip = (self.next - start) as usize;
            self.deliver(&held.data[skip..], held.ts_us, held.ack);
        }
        if self.pending.is_empty() {
            self.hole_since = None;
        }
    }

    /// Gives up on the oldest hole: the bytes after it are delivered, with a gap recorded at
    /// their start. Returns whether there was a hole.
    pub fn skip_hole(&mut self) -> bool {
        let Some((&start, _)) = self.pending.first_key_value() else {
            return false;
        };
        let missing = start - self.next;
        self.gaps.push_back(self.delivered);
        self.next = start;
        if let Some(s) = self.seq_next {
            self.seq_next = Some(s.wrapping_add(missing as u32));
        }
        self.hole_since = None;
        self.drain_pending();
        if !self.pending.is_empty() {
            self.hole_since = self.pending.values().map(|h| h.ts_us).min();
        }
        true
    }

    /// Skips holes that have waited longer than `window_us` of capture time by `now_us`.
    pub fn expire_holes(&mut self, now_us: i64, window_us: i64) {
        while self
            .hole_since
            .is_some_and(|t| now_us.saturating_sub(t) > window_us)
        {
            if !self.skip_hole() {
                break;
            }
        }
    }

    /// The stream ended (FIN, RST, timeout or end of capture): every hole becomes a gap, and a
    /// FIN beyond the data we have means the tail is missing too.
    pub fn close(&mut self) {
        while self.skip_hole() {}
        if self.fin_at.is_some_and(|f| f > self.next) && self.gaps.back() != Some(&self.delivered) {
            self.gaps.push_back(self.delivered);
        }
    }

    /// The in-order bytes available to read now: up to the next gap.
    pub fn readable(&self) -> &[u8] {
        let upto = match self.gaps.front() {
            Some(&g) if g >= self.consumed => (g - self.consumed) as usize,
            _ => self.data.len(),
        };
        &self.data[..upto.min(self.data.len())]
    }

    /// Read position of the first readable byte (delivered bytes counted, gaps not).
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// The stream offset (sequence space, what ACKs speak of) of read position `v`.
    pub fn offset_at(&self, v: u64) -> Option<u64> {
        self.meta_at(v).map(|m| m.offset + (v - m.vpos))
    }

    /// Bytes are missing right at the read position (the reader must resynchronise).
    pub fn at_gap(&self) -> bool {
        self.gaps.front().is_some_and(|&g| g <= self.consumed)
    }

    /// Acknowledges the gap at the read position.
    pub fn pass_gap(&mut self) {
        while self.gaps.front().is_some_and(|&g| g <= self.consumed) {
            self.gaps.pop_front();
        }
    }

    /// Marks `n` readable bytes as read.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        self.consumed += n as u64;
        while self.metas.len() > 1 && self.metas[1].vpos <= self.consumed {
            self.metas.pop_front();
        }
    }

    /// The segment metadata covering read position `at` (delivered, not yet consumed).
    pub fn meta_at(&self, at: u64) -> Option<SegMeta> {
        let i = self.metas.partition_point(|m| m.vpos <= at);
        i.checked_sub(1).map(|i| self.metas[i])
    }

    /// Read position of the next delivered segment start or gap after `at` (where a
    /// resynchronisation may find a message start).
    pub fn next_boundary_after(&self, at: u64) -> Option<u64> {
        let i = self.metas.partition_point(|m| m.vpos <= at);
        let seg = self.metas.get(i).map(|m| m.vpos);
        let gap = self.gaps.iter().copied().find(|&g| g > at);
        match (seg, gap) {
            (Some(s), Some(g)) => Some(s.min(g)),
            (s, g) => s.or(g),
        }
    }

    /// Bytes held by this direction (delivered and out of order).
    pub fn buffered(&self) -> usize {
        self.data.len() + self.pending_bytes
    }

    /// A FIN was seen and every byte before it delivered, or a RST came.
    pub fn finished(&self) -> bool {
        self.rst || self.fin_at.is_some_and(|f| self.next >= f)
    }

    pub fn reset(&self) -> bool {
        self.rst
    }

    /// No byte is waiting in this direction (delivered or held).
    pub fn is_drained(&self) -> bool {
        self.data.is_empty() && self.pending.is_empty()
    }

    /// The stream has started (a segment with a sequence number was seen).
    pub fn started(&self) -> bool {
        self.seq_next.is_some()
    }
}

#[cfg(test)]
mod tests;
