//! Acknowledged signatures (issue 16, triage): QA recognises a mismatch cluster as an expected
//! change and says so, with who and why. An acknowledged signature is then counted as
//! *expected* — beside the raw figures, never instead of them — and it leaves the gate's
//! divergence only when its acknowledgement says `exclude_from_gate`.
//!
//! Acknowledgements are kept in a small JSON file (`admin.acknowledgements`, by default beside
//! the Kafka spool or the event file; docs/api.md), rewritten whole on every change through a
//! temporary file and a rename, so a crash leaves the old file or the new one, never half of one.
//! A change that cannot be written is refused and changes nothing in memory either: what the API
//! answered is what the next start reads.
//!
//! What a person typed (`by`, `reason`) is published, so it goes through the same redaction as
//! traffic before it is kept: a token pasted into a reason is never written to the file or
//! served.

use crate::event::format_ts;
use crate::redact::Redaction;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The file's schema name.
pub const ACK_SCHEMA: &str = "shadowdiff.acknowledgements.v1";
/// Acknowledgements kept at most (a bound like every other collection here).
pub const MAX_ACKS: usize = 1000;
/// Characters kept of `by` and of `reason`.
pub const MAX_BY: usize = 100;
pub const MAX_REASON: usize = 1000;

/// One acknowledged signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub signature: String,
    pub endpoint: String,
    /// Who acknowledged it (redacted, at most [`MAX_BY`] characters).
    pub by: String,
    /// Why (redacted, at most [`MAX_REASON`] characters).
    pub reason: String,
    /// Whether the gate leaves this signature's exchanges out of its divergence.
    pub exclude_from_gate: bool,
    /// When (RFC 3339).
    pub at: String,
}

/// What a client asks to acknowledge (the body of `POST /api/v1/acknowledgements`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub signature: String,
    /// Needed only when the signature is seen on more than one endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub by: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub exclude_from_gate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("acknowledgements file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("at most {MAX_ACKS} acknowledgements are kept; remove one first")]
    Full,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckFile {
    schema: String,
    acknowledgements: Vec<Acknowledgement>,
}

/// The acknowledgements of one process, keyed by (endpoint, signature).
#[derive(Debug, Default)]
pub struct Acknowledgements {
    path: Option<PathBuf>,
    map: Mutex<BTreeMap<(String, String), Acknowledgement>>,
}

impl Acknowledgements {
    /// Kept in memory only (tests, and a sidecar with neither a spool nor an event file).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Reads `path` (absent: none yet). A file that cannot be read or parsed is an error: the
    /// start must not silently forget what QA acknowledged.
    pub fn open(path: &Path) -> Result<Self, AckError> {
        let file_err = |reason: String| AckError::File {
            path: path.to_path_buf(),
            reason,
        };
        let map = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(file_err(e.to_string())),
            Ok(bytes) => {
                let f: AckFile =
                    serde_json::from_slice(&bytes).map_err(|e| file_err(e.to_string()))?;
                if f.schema != ACK_SCHEMA {
                    return Err(file_err(format!(
                        "schema {:?}, want {ACK_SCHEMA}",
                        f.schema
                    )));
                }
                f.acknowledgements
                    .into_iter()
                    .take(MAX_ACKS)
                    .map(|a| ((a.endpoint.clone(), a.signature.clone()), a))
                    .collect()
            }
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            map: Mutex::new(map),
        })
    }

    /// Where they are kept, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records (or replaces) an acknowledgement of `signature` on `endpoint`; `by` and `reason`
    /// are redacted and capped first. Written to the file before it takes effect.
    pub fn acknowledge(
        &self,
        req: &AckRequest,
        endpoint: &str,
        redaction: &Redaction,
        now: SystemTime,
    ) -> Result<Acknowledgement, AckError> {
        let by = clean(&req.by, MAX_BY, redaction);
        if by.is_empty() {
            return Err(AckError::Invalid("`by` must say who acknowledges".into()));
        }
        let a = Acknowledgement {
            signature: req.signature.clone(),
            endpoint: endpoint.to_string(),
            by,
            reason: clean(&req.reason, MAX_REASON, redaction),
            exclude_from_gate: req.exclude_from_gate,
            at: format_ts(now),
        };
        let mut map = self.map.lock();
        let key = (a.endpoint.clone(), a.signature.clone());
        if map.len() >= MAX_ACKS && !map.contains_key(&key) {
            return Err(AckError::Full);
        }
        let mut next = map.clone();
        next.insert(key, a.clone());
        self.write(&next)?;
        *map = next;
        Ok(a)
    }

    /// Removes an acknowledgement; `Ok(None)` when there was none.
    pub fn remove(
        &self,
        endpoint: &str,
        signature: &str,
    ) -> Result<Option<Acknowledgement>, AckError> {
        let mut map = self.map.lock();
        let key = (endpoint.to_string(), signature.to_string());
        if !map.contains_key(&key) {
            return Ok(None);
        }
        let mut next = map.clone();
        let gone = next.remove(&key);
        self.write(&next)?;
        *map = next;
        Ok(gone)
    }

    pub fn get(&self, endpoint: &str, signature: &str) -> Option<Acknowledgement> {
        self.map
            .lock()
            .get(&(endpoint.to_string(), signature.to_string()))
            .cloned()
    }

    /// Every acknowledgement, by endpoint then signature.
    pub fn list(&self) -> Vec<Acknowledgement> {
        self.map.lock().values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.map.lock().is_empty()
    }

    /// Writes the whole set through a temporary file and a rename (same folder, so the rename
    /// is atomic).
    fn write(&self, map: &BTreeMap<(String, String), Acknowledgement>) -> Result<(), AckError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file_err = |e: std::io::Error| AckError::File {
            path: path.clone(),
            reason: e.to_string(),
        };
        let f = AckFile {
            schema: ACK_SCHEMA.into(),
            acknowledgements: map.values().cloned().collect(),
        };
        let text = serde_json::to_vec_pretty(&f).map_err(|e| AckError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(file_err)?;
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            use std::io::Write;
            let mut out = std::fs::File::create(&tmp).map_err(file_err)?;
            out.write_all(&text).map_err(file_err)?;
            out.sync_all().map_err(file_err)?;
        }
        std::fs::rename(&tmp, path).map_err(file_err)
    }
}

/// Free text as it may be kept and published: one line, redacted, capped at `max` characters.
fn clean(s: &str, max: usize, redaction: &Redaction) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let r = redaction.text(one_line.trim());
    match r.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &r[..i]),
        None => r,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req(sig: &str, reason: &str) -> AckRequest {
        AckRequest {
            signature: sig.into(),
            endpoint: None,
            by: "qa@example.com".into(),
            reason: reason.into(),
            exclude_from_gate: true,
        }
    }

    #[test]
    fn kept_across_a_reopen_and_redacted() {
        let dir = std::env::temp_dir().join(format!("shadowdiff-ack-{}", std::process::id()));
        let path = dir.join("acks.json");
        let _ = std::fs::remove_file(&path);
        let r = Redaction::default();
        let a = Acknowledgements::open(&path).unwrap();
        let token = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
        let got = a
            .acknowledge(
                &req("3f2a", &format!("new price\nfield {token}")),
                "GET /a",
                &r,
                SystemTime::UNIX_EPOCH,
            )
            .unwrap();
        assert!(!got.by.contains("qa@example.com"), "{got:?}");
        assert!(
            !got.reason.contains("eyJ") && !got.reason.contains('\n'),
            "{got:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("eyJhbGci") && !text.contains("qa@example.com"));
        let again = Acknowledgements::open(&path).unwrap();
        assert_eq!(again.list(), vec![got]);
        assert!(again.remove("GET /a", "3f2a").unwrap().is_some());
        assert!(Acknowledgements::open(&path).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_change_that_cannot_be_written_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("shadowdiff-ack-f-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Acknowledgements::open(&dir.join("sub/acks.json")).unwrap();
        // Its folder becomes a regular file: nothing can be written below it (even as root).
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sub"), b"x").unwrap();
        let r = Redaction::default();
        assert!(
            a.acknowledge(&req("1", "x"), "GET /a", &r, SystemTime::UNIX_EPOCH)
                .is_err()
        );
        assert!(a.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
