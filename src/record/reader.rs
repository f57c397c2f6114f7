//! Reads a recording: one [`Recording`] per line, blank lines skipped, a bad line reported with
//! its number (and skipped by the caller, counted) rather than ending the read. A line is read
//! whole up to [`MAX_LINE`]; a longer one is refused without being held in memory.

use super::{RecordError, Recording};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Longest line accepted: a 4 MiB body (the default `shadow.max_body_bytes`) in base64 on both
/// sides, with room to spare.
pub const MAX_LINE: usize = 16 << 20;

/// Why a recording cannot be read at all (as opposed to one bad line).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One bad line: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// A recording's lines, in order.
pub struct Reader<R> {
    input: R,
    line: usize,
    buf: Vec<u8>,
}

impl Reader<BufReader<std::fs::File>> {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let f = std::fs::File::open(path).map_err(|source| ReadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Reader::new(BufReader::with_capacity(64 << 10, f)))
    }
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The next line (bytes up to the newline, at most `MAX_LINE + 1` held), `None` at the end.
    fn next_line(&mut self) -> Option<std::io::Result<bool>> {
        self.buf.clear();
        let mut limited = (&mut self.input).take(MAX_LINE as u64 + 1);
        match limited.read_until(b'\n', &mut self.buf) {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                if self.buf.len() > MAX_LINE && !self.buf.ends_with(b"\n") {
                    // Skip the rest of the over-long line without keeping it.
                    let mut sink = Vec::new();
                    loop {
                        sink.clear();
                        let mut t = (&mut self.input).take(64 << 10);
                        match t.read_until(b'\n', &mut sink) {
                            Ok(0) => break,
                            Ok(_) if sink.ends_with(b"\n") => break,
                            Ok(_) => continue,
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    return Some(Ok(false));
                }
                Some(Ok(true))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Recording, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let fits = match self.next_line()? {
                Ok(f) => f,
                Err(e) => {
                    return Some(Err(LineError {
                        line: self.line + 1,
                        reason: e.to_string(),
                    }));
                }
            };
            let line = self.line;
            if !fits {
                return Some(Err(LineError {
                    line,
                    reason: format!("longer than {MAX_LINE} bytes"),
                }));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim(),
                Err(e) => {
                    return Some(Err(LineError {
                        line,
                        reason: format!("not UTF-8: {e}"),
                    }));
                }
            };
            if text.is_empty() {
                continue;
            }
            return Some(
                Recording::from_json(text).map_err(|e: RecordError| LineError {
                    line,
                    reason: e.to_string(),
                }),
            );
        }
    }
}
