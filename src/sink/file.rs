//! The file sink: one JSON line per published event (mismatch, candidate_error, noise), rotated
//! by size. Matches and skips are counted by other sinks, not written here.
//!
//! `observe` only enqueues on a bounded channel; a writer thread does the I/O ([`LineWriter`],
//! which the recorder of `record:` shares). A full queue drops the event and counts it — the
//! comparison workers (and so the request path) never wait on a disk.

use crate::pipeline::{Observation, Sink};
use crate::units::de;
use crossbeam_channel::{
    Receiver, RecvTimeoutError, Sender as SyncSender, TryRecvError, TrySendError,
    bounded as sync_channel,
};
use parking_lot::Mutex;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("file sink: cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file sink: cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

/// Event counts, for `shadowdiff_sink_events_total{sink="file",outcome=...}`.
#[derive(Debug, Default)]
pub struct FileSinkCounters {
    pub written: AtomicU64,
    /// Dropped because the queue was full (or the writer had stopped).
    pub dropped: AtomicU64,
    /// Lost to I/O errors.
    pub errors: AtomicU64,
}

impl FileSinkCounters {
    /// `(outcome, count)` pairs in a stable order.
    pub fn snapshot(&self) -> [(&'static str, u64); 3] {
        [
            ("written", self.written.load(Ordering::Relaxed)),
            ("dropped", self.dropped.load(Ordering::Relaxed)),
            ("error", self.errors.load(Ordering::Relaxed)),
        ]
    }
}

impl crate::pipeline::metrics::MetricsSource for FileSinkCounters {
    fn collect(&self) -> Vec<crate::pipeline::metrics::MetricFamily> {
        vec![crate::pipeline::metrics::sink_events(
            "file",
            self.snapshot(),
        )]
    }
}

enum Msg {
    Line(String),
    /// Flush, fsync, and answer; the writer stops after it.
    Stop(SyncSender<()>),
}

/// A JSONL file written by a thread of its own behind a bounded queue, rotated by size: what
/// the file sink and the recorder (`crate::record`) write through. [`LineWriter::try_line`]
/// never blocks; a full queue drops the line and counts it.
pub struct LineWriter {
    tx: SyncSender<Msg>,
    counters: Arc<FileSinkCounters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Names the writer in logs (`file`, `record`).
    name: &'static str,
}

impl LineWriter {
    /// Opens (appending to) `cfg.path` and starts the writer thread `shadowdiff-{name}`.
    pub fn open(cfg: &FileSinkConfig, name: &'static str) -> Result<LineWriter, FileSinkError> {
        let file = open_append(&cfg.path).map_err(|source| FileSinkError::Open {
            path: cfg.path.clone(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = sync_channel(cfg.queue);
        let counters = Arc::new(FileSinkCounters::default());
        let mut w = Writer {
            path: cfg.path.clone(),
            out: BufWriter::with_capacity(64 << 10, file),
            size,
            rotate_bytes: cfg.rotate_bytes as u64,
            keep: cfg.keep,
            counters: counters.clone(),
            name,
        };
        let thread = std::thread::Builder::new()
            .name(format!("shadowdiff-{name}"))
            .spawn(move || w.run(rx))
            .map_err(FileSinkError::Thread)?;
        Ok(LineWriter {
            tx,
            counters,
            thread: Mutex::new(Some(thread)),
            name,
        })
    }

    pub fn counters(&self) -> Arc<FileSinkCounters> {
        self.counters.clone()
    }

    /// Enqueues one line (without its newline); `false` when it was dropped (counted).
    pub fn try_line(&self, line: String) -> bool {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Enqueues one line, waiting for room; `false` (counted as dropped) only when the writer
    /// thread is gone.
    pub fn line_waiting(&self, line: String) -> bool {
        if self.tx.send(Msg::Line(line)).is_ok() {
            return true;
        }
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Writes what is queued, fsyncs and stops the thread, waiting at most `grace`.
    pub fn shutdown(&self, grace: Duration) {
        let name = self.name;
        let (ack_tx, ack_rx) = sync_channel(1);
        // Queued lines are written before the stop is seen; if the queue stays full past the
        // grace, give up rather than hang shutdown.
        let deadline = std::time::Instant::now() + grace;
        let mut msg = Msg::Stop(ack_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    if std::time::Instant::now() >= deadline {
                        tracing::warn!(sink = name, "queue still full at the shutdown deadline");
                        return;
                    }
                    msg = m;
                    std::thread::yield_now();
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match ack_rx.recv_timeout(left) {
            Ok(()) => {
                if let Some(t) = self.thread.lock().take() {
                    let _ = t.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(sink = name, "not flushed within the shutdown grace");
            }
            Err(RecvTimeoutError::Disconnected) => {}
        }
    }
}

/// The file sink: published events through a [`LineWriter`].
pub struct FileSink {
    writer: LineWriter,
}

impl FileSink {
    /// Opens (appending to) `cfg.path` and starts the writer thread.
    pub fn open(cfg: &FileSinkConfig) -> Result<FileSink, FileSinkError> {
        Ok(FileSink {
            writer: LineWriter::open(cfg, "file")?,
        })
    }

    pub fn counters(&self) -> Arc<FileSinkCounters> {
        self.writer.counters()
    }
}

impl Sink for FileSink {
    fn observe(&self, o: &Observation<'_>) {
        let Some(ev) = o.event else { return };
        self.writer.try_line(ev.to_json_line());
    }

    fn shutdown(&self, grace: Duration) {
        self.writer.shutdown(grace);
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// `events.jsonl` → `events.jsonl.3`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    rotate_bytes: u64,
    keep: usize,
    counters: Arc<FileSinkCounters>,
    name: &'static str,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        let mut next: Option<Msg> = None;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => {
                        self.flush(true);
                        return;
                    }
                },
            };
            match msg {
                Msg::Line(l) => self.write(&l),
                Msg::Stop(ack) => {
                    self.flush(true);
                    let _ = ack.send(());
                    return;
                }
            }
            // Flush when the queue is momentarily empty: a reader tailing the file sees events
            // promptly, and bursts still go out in large writes.
            match rx.try_recv() {
                Ok(m) => next = Some(m),
                Err(TryRecvError::Empty) => self.flush(false),
                Err(TryRecvError::Disconnected) => {
                    self.flush(true);
                    return;
                }
            }
        }
    }

    fn write(&mut self, line: &str) {
        let n = line.len() as u64 + 1;
        if self.size > 0
            && self.size + n > self.rotate_bytes
            && let Err(e) = self.rotate()
        {
            tracing::error!(sink = self.name, path = %self.path.display(), error = %e, "rotation failed");
        }
        let r = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        match r {
            Ok(()) => {
                self.size += n;
                self.counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(sink = self.name, path = %self.path.display(), error = %e, "write failed");
            }
        }
    }

    fn flush(&mut self, sync: bool) {
        let r = self.out.flush().and_then(|()| {
            if sync {
                self.out.get_ref().sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(sink = self.name, path = %self.path.display(), error = %e, "flush failed");
        }
    }

    /// `path` → `path.1` → … → `path.{keep}`; the oldest is deleted.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.flush(true);
        let _ = std::fs::remove_file(numbered(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.out = BufWriter::with_capacity(64 << 10, open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// `sinks.file:` — JSONL events, rotated by size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    /// Default `shadowdiff-events.jsonl` (relative to the working directory).
    pub path: PathBuf,
    /// Rotate when the file would exceed this; at least 1 byte. Default `100MiB`.
    #[serde(deserialize_with = "de::positive_size")]
    pub rotate_bytes: usize,
    /// Rotated files kept (`path.1` … `path.{keep}`). Default `5`.
    #[serde(deserialize_with = "de::positive")]
    pub keep: usize,
    /// Events waiting for the writer at most; beyond, dropped and counted. Default `4096`.
    #[serde(deserialize_with = "de::positive")]
    pub queue: usize,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("shadowdiff-events.jsonl"),
            rotate_bytes: 100 << 20,
            keep: 5,
            queue: 4096,
        }
    }
}
