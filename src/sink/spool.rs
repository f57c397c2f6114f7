//! The disk spool behind the Kafka sink: an ordered, size-bounded queue of `(key, payload)`
//! records in one redb file. Every append and every removal is one committed redb transaction
//! (durable on return, so a record survives `kill -9` and power loss once `append` returned).
//!
//! Records are keyed by a sequence number the caller assigns (the Kafka sink numbers every event
//! as it arrives, so an event that failed after later ones were spooled still sorts before them);
//! the head of the spool is the lowest number. The Kafka sink reads the head, publishes it and
//! removes what Kafka acknowledged.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

/// Sequence number → `[key length: u16 LE][key][payload]`.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// Bytes counted per record on top of its stored value (the 8-byte sequence number), so that
/// `max_bytes` bounds what the file holds, not only the payloads.
const SEQ_BYTES: u64 = 8;

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
        let mut out = Appended::default();
        if records.is_empty() {
            return Ok(out);
        }
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        let (mut len, mut bytes, mut next) = (self.len, self.bytes, self.next_seq);
        {
            let mut t = w.open_table(EVENTS).map_err(|e| self.err(e))?;
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
        (self.len, self.bytes, self.next_seq) = (len, bytes, next);
        Ok(out)
    }

    /// The oldest records, at most `max_records` and about `max_bytes` (always at least one).
    pub fn head(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpoolEntry>, SpoolError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(EVENTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let mut taken = 0usize;
        for row in t.iter().map_err(|e| self.err(e))? {
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

    /// Removes records by sequence number in one durable transaction (unknown ones are ignored).
    pub fn remove(&mut self, seqs: &[u64]) -> Result<(), SpoolError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        let (mut len, mut bytes) = (self.len, self.bytes);
        {
            let mut t = w.open_table(EVENTS).map_err(|e| self.err(e))?;
            for &s in seqs {
                if let Some(v) = t.remove(s).map_err(|e| self.err(e))? {
                    len -= 1;
                    bytes = bytes.saturating_sub(record_size(v.value().len()));
                }
            }
        }
        w.commit().map_err(|e| self.err(e))?;
        (self.len, self.bytes) = (len, bytes);
        Ok(())
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
    fn head_respects_the_byte_budget_but_returns_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&recs(0..5)).unwrap();
        assert_eq!(s.head(10, 1).unwrap().len(), 1);
        assert_eq!(s.head(10, usize::MAX).unwrap().len(), 5);
    }
}
