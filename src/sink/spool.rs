//! The disk spool behind the Kafka sink: an ordered, size-bounded queue of `(key, payload)`
//! records in one redb file.
//!
//! Durability (redb 4 offers two levels: `Immediate`, fsync before `commit` returns, and
//! `None`, kept in memory until the next `Immediate` commit, lost by a crash before it):
//!
//! - a write that **appends** is committed `Immediate`: a record is on disk, and survives
//!   `kill -9` and power loss, once [`Spool::write`] returned it as stored;
//! - a write that **only removes** is committed `None` unless the last durable commit is older
//!   than [`REMOVAL_SYNC`]; the next durable commit (the next append, the next removal after
//!   that period, or [`Spool::sync`]) makes it durable. A crash can therefore bring back records
//!   removed up to [`REMOVAL_SYNC`] before it: they were acknowledged by Kafka, and are sent
//!   again (same event id) by the next process. Nothing stored is ever lost this way.
//!
//! Records are keyed by a sequence number the caller assigns (the Kafka sink numbers every event
//! as it arrives, so an event that failed after later ones were spooled still sorts before them);
//! the head of the spool is the lowest number. The Kafka sink reads the head, publishes it and
//! removes what Kafka acknowledged.

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Sequence number → `[key length: u16 LE][key][payload]`.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// Bytes counted per record on top of its stored value (the 8-byte sequence number), so that
/// `max_bytes` bounds what the file holds, not only the payloads.
const SEQ_BYTES: u64 = 8;

/// The longest time removals stay non-durable (see the module documentation): an fsync per
/// removal batch cost the drain a third of its thread, and a removal lost by a crash only means
/// a duplicate, which consumers already handle by event id.
pub const REMOVAL_SYNC: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool {path}: {source}")]
    Store { path: PathBuf, source: redb::Error },
}

/// One spooled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub seq: u64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// What an append did: records are stored in order until the size bound is reached; the rest
/// of the batch is refused (the caller counts them as dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: u64,
    pub refused: u64,
}

pub struct Spool {
    db: Database,
    path: PathBuf,
    max_bytes: u64,
    len: u64,
    bytes: u64,
    next_seq: u64,
    /// When the last `Immediate` commit returned.
    synced_at: Instant,
    /// Removals were committed non-durably since then.
    unsynced: bool,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// `value_len` includes the key-length prefix.
fn record_size(value_len: usize) -> u64 {
    value_len as u64 + SEQ_BYTES
}

impl Spool {
    /// Opens (or creates) `dir/events.redb`. After a crash redb repairs the file on open; the
    /// records committed before the crash are all there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("events.redb");
        let err = |e: redb::Error| SpoolError::Store {
            path: path.clone(),
            source: e,
        };
        let db = Database::create(&path).map_err(|e| err(e.into()))?;
        let (mut len, mut bytes, mut next_seq) = (0u64, 0u64, 0u64);
        {
            // Create the table on first use so that readers never see "table does not exist".
            let w = db.begin_write().map_err(|e| err(e.into()))?;
            w.open_table(EVENTS).map_err(|e| err(e.into()))?;
            w.commit().map_err(|e| err(e.into()))?;
            let r = db.begin_read().map_err(|e| err(e.into()))?;
            let t = r.open_table(EVENTS).map_err(|e| err(e.into()))?;
            for row in t.iter().map_err(|e| err(e.into()))? {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                len += 1;
                bytes += record_size(v.value().len());
                next_seq = k.value() + 1;
            }
        }
        Ok(Spool {
            db,
            path,
            max_bytes,
            len,
            bytes,
            next_seq,
            synced_at: Instant::now(),
            unsynced: false,
        })
    }

    fn err(&self, e: impl Into<redb::Error>) -> SpoolError {
        SpoolError::Store {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held, as counted against `max_bytes` (keys, payloads and a small per-record
    /// overhead; the file itself is larger by redb's page slack).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number after the highest one ever stored in this file (0 when empty):
    /// where the numbering continues after a restart.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Stores `(seq, key, payload)` records in one durable transaction. Once the size bound is
    /// reached the remaining records are refused, so the spool keeps what was promised first
    /// rather than the newest. A record whose `seq` is already present replaces it.
    pub fn append<K: AsRef<[u8]>, P: AsRef<[u8]>>(
        &mut self,
        records: &[(u64, K, P)],
    ) -> Result<Appended, SpoolError> {
        self.write(records, &[])
    }

    /// Removes records by sequence number (unknown ones are ignored); see [`Spool::write`] for
    /// when the removal is durable.
    pub fn remove(&mut self, seqs: &[u64]) -> Result<(), SpoolError> {
        self.write::<&[u8], &[u8]>(&[], seqs).map(|_| ())
    }

    /// Removes `remove` and then appends `records`, in one transaction: durable on return when
    /// it appends anything (or when the last durable commit is older than [`REMOVAL_SYNC`]),
    /// otherwise non-durable until the next durable commit (module documentation). Appending
    /// follows [`Spool::append`]'s rules; on error nothing of either is applied.
    pub fn write<K: AsRef<[u8]>, P: AsRef<[u8]>>(
        &mut self,
        records: &[(u64, K, P)],
        remove: &[u64],
    ) -> Result<Appended, SpoolError> {
        let mut out = Appended::default();
        if records.is_empty() && remove.is_empty() {
            return Ok(out);
        }
        let mut w = self.db.begin_write().map_err(|e| self.err(e))?;
        let durable = !records.is_empty() || self.synced_at.elapsed() >= REMOVAL_SYNC;
        if !durable {
            w.set_durability(Durability::None)
                .map_err(|e| self.err(e))?;
        }
        let (mut len, mut bytes, mut next) = (self.len, self.bytes, self.next_seq);
        {
            let mut t = w.open_table(EVENTS).map_err(|e| self.err(e))?;
            if let (Some(&lo), Some(&hi)) = (remove.iter().min(), remove.iter().max()) {
                // One ordered pass over the removed range (acknowledgements come nearly in
                // order), instead of one tree descent and leaf rewrite per record: redb defers a
                // leaf's rewrite until the scan leaves it.
                let mut sorted = remove.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                let mut i = 0;
                t.retain_in(lo..=hi, |k, v| {
                    while i < sorted.len() && sorted[i] < k {
                        i += 1;
                    }
                    let gone = sorted.get(i) == Some(&k);
                    if gone {
                        len -= 1;
                        bytes = bytes.saturating_sub(record_size(v.len()));
                    }
                    !gone
                })
                .map_err(|e| self.err(e))?;
            }
            let mut value = Vec::new();
            for (seq, k, p) in records {
                let (k, p) = (k.as_ref(), p.as_ref());
                // Keys are endpoints; a key longer than u16 is cut (it only picks the partition).
                let k = &k[..k.len().min(u16::MAX as usize)];
                value.clear();
                value.extend_from_slice(&(k.len() as u16).to_le_bytes());
                value.extend_from_slice(k);
                value.extend_from_slice(p);
                let size = record_size(value.len());
                if bytes + size > self.max_bytes {
                    out.refused += 1;
                    continue;
                }
                if let Some(old) = t.insert(*seq, value.as_slice()).map_err(|e| self.err(e))? {
                    len -= 1;
                    bytes = bytes.saturating_sub(record_size(old.value().len()));
                }
                next = next.max(seq + 1);
                len += 1;
                bytes += size;
                out.stored += 1;
            }
        }
        w.commit().map_err(|e| self.err(e))?;
        if durable {
            self.synced_at = Instant::now();
            self.unsynced = false;
        } else {
            self.unsynced = true;
        }
        (self.len, self.bytes, self.next_seq) = (len, bytes, next);
        Ok(out)
    }

    /// Makes earlier non-durable removals durable now if they are older than [`REMOVAL_SYNC`]
    /// (`force`: in any case). Cheap when there are none.
    pub fn sync(&mut self, force: bool) -> Result<(), SpoolError> {
        if !self.unsynced || (!force && self.synced_at.elapsed() < REMOVAL_SYNC) {
            return Ok(());
        }
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        w.commit().map_err(|e| self.err(e))?;
        self.synced_at = Instant::now();
        self.unsynced = false;
        Ok(())
    }

    /// The oldest records, at most `max_records` and about `max_bytes` (always at least one).
    pub fn head(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolEntry>, SpoolError> {
        self.read_from(0, max_records, max_bytes)
    }

    /// Like [`Spool::head`], from sequence number `from` on: the drain's read position, so that
    /// what is already on its way to Kafka is not read again.
    pub fn read_from(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolEntry>, SpoolError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(EVENTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let mut taken = 0usize;
        for row in t.range(from..).map_err(|e| self.err(e))? {
            if out.len() >= max_records || (taken >= max_bytes && !out.is_empty()) {
                break;
            }
            let (k, v) = row.map_err(|e| self.err(e))?;
            let v = v.value();
            taken += v.len();
            out.push(decode(k.value(), v));
        }
        Ok(out)
    }

    /// Gives file space back once the spool is empty (redb files do not shrink by themselves).
    pub fn compact_if_empty(&mut self) -> Result<(), SpoolError> {
        if self.len == 0 {
            self.db
                .compact()
                .map_err(|e| self.err(redb::Error::from(e)))?;
        }
        Ok(())
    }
}

fn decode(seq: u64, v: &[u8]) -> SpoolEntry {
    let klen = v
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .unwrap_or(0);
    let key = v.get(2..2 + klen).unwrap_or_default().to_vec();
    let payload = v.get(2 + klen..).unwrap_or_default().to_vec();
    SpoolEntry { seq, key, payload }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(range: std::ops::Range<u64>) -> Vec<(u64, String, String)> {
        range
            .map(|i| (i, format!("GET /k{}", i % 3), format!("payload-{i}")))
            .collect()
    }

    #[test]
    fn keeps_order_across_reopen_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(s.append(&recs(0..10)).unwrap().stored, 10);
            let head = s.head(3, usize::MAX).unwrap();
            assert_eq!(head.len(), 3);
            assert_eq!(head[0].payload, b"payload-0");
            assert_eq!(head[0].key, b"GET /k0");
            s.remove(&[head[0].seq, head[1].seq]).unwrap();
            assert_eq!(s.len(), 8);
        }
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s.next_seq(), 10);
        s.append(&recs(10..12)).unwrap();
        let all = s.head(100, usize::MAX).unwrap();
        let payloads: Vec<String> = all
            .iter()
            .map(|e| String::from_utf8(e.payload.clone()).unwrap())
            .collect();
        let want: Vec<String> = (2..12).map(|i| format!("payload-{i}")).collect();
        assert_eq!(payloads, want);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        s.remove(&seqs).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        s.compact_if_empty().unwrap();
    }

    #[test]
    fn refuses_beyond_the_size_bound_and_keeps_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let one = record_size(2 + "GET /k0".len() + "payload-0".len());
        let mut s = Spool::open(dir.path(), one * 4).unwrap();
        let a = s.append(&recs(0..6)).unwrap();
        assert_eq!(
            a,
            Appended {
                stored: 4,
                refused: 2
            }
        );
        assert!(s.bytes() <= one * 4);
        let head = s.head(10, usize::MAX).unwrap();
        assert_eq!(head.last().unwrap().payload, b"payload-3");
    }

    #[test]
    fn a_late_record_with_a_lower_number_sorts_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&recs(5..8)).unwrap();
        s.append(&recs(2..3)).unwrap();
        let seqs: Vec<u64> = s
            .head(10, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [2, 5, 6, 7]);
        assert_eq!(s.next_seq(), 8);
        // Storing a number twice replaces, and the accounting follows.
        s.append(&recs(2..3)).unwrap();
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn one_write_removes_out_of_order_and_appends_and_read_from_skips_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&recs(0..10)).unwrap();
        // What the spool should count: its records' sizes, as read back.
        let held = |s: &Spool| -> u64 {
            s.head(100, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| record_size(2 + e.key.len() + e.payload.len()))
                .sum()
        };
        // Acknowledgements arrive out of order, with repeats and numbers never stored.
        let a = s.write(&recs(10..12), &[7, 2, 3, 2, 99, 0]).unwrap();
        assert_eq!(a.stored, 2);
        assert_eq!(s.len(), 10 - 4 + 2);
        let seqs = |v: Vec<SpoolEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(s.head(100, usize::MAX).unwrap()),
            [1, 4, 5, 6, 8, 9, 10, 11]
        );
        assert_eq!(seqs(s.read_from(6, 3, usize::MAX).unwrap()), [6, 8, 9]);
        assert!(s.read_from(12, 3, usize::MAX).unwrap().is_empty());
        assert_eq!(s.bytes(), held(&s));
        // Removals alone, then a forced sync; all of it is there after reopening.
        s.remove(&[1, 4]).unwrap();
        s.sync(true).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(seqs(s.head(100, usize::MAX).unwrap()), [5, 6, 8, 9, 10, 11]);
        assert_eq!(s.bytes(), held(&s));
    }

    #[test]
    fn head_respects_the_byte_budget_but_returns_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&recs(0..5)).unwrap();
        assert_eq!(s.head(10, 1).unwrap().len(), 1);
        assert_eq!(s.head(10, usize::MAX).unwrap().len(), 5);
    }
}
