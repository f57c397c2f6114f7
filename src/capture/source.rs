//! The capture's only I/O: libpcap through the `pcap` crate, for a live interface (a BPF
//! filter on the port, a snapshot length that fits loopback's 64 KiB segments, the kernel's
//! received/dropped counters) or a pcap/pcapng file (`.gz` decompressed first). [`run`]
//! drives a [`Tracker`] with its frames and hands every finished exchange to a callback.

use super::packet::Link;
use super::{Counts, Finished, Limits, Tracker};
use parking_lot::Mutex;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where the packets come from.
#[derive(Debug, Clone)]
pub enum Input {
    Interface(String),
    File(PathBuf),
}

/// Loopback's MTU is 65,536: a snapshot length of 256 KiB never cuts a segment (and covers
/// GSO/GRO aggregates up to that size), where GoReplay's users saw truncated large packets.
pub const SNAPLEN: i32 = 262_144;
/// libpcap's kernel buffer for a live capture: room for bursts while we reassemble.
const BUFFER_BYTES: i32 = 32 << 20;
/// How often shared counters (and the kernel's figures) are refreshed.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {what}: {source}")]
    Open { what: String, source: pcap::Error },
    #[error("cannot set the filter {filter:?}: {source}")]
    Filter { filter: String, source: pcap::Error },
    #[error("reading packets: {0}")]
    Read(pcap::Error),
    #[error("cannot decompress {path}: {source}")]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The BPF filter for a server port.
pub fn filter(port: u16) -> String {
    // IPv4 fragments after the first carry no port: let them through too.
    format!("tcp port {port} or (ip[6:2] & 0x1fff != 0)")
}

/// Reads every frame of `input` into a tracker for `port` and calls `each` for every finished
/// exchange, until the file ends or `stop` is set. `shared` is refreshed with the counts as
/// they grow (for `/metrics`). Returns the final counts.
pub fn run(
    input: &Input,
    port: u16,
    limits: Limits,
    stop: &AtomicBool,
    shared: Option<&Arc<Mutex<Counts>>>,
    each: impl FnMut(Finished),
) -> Result<Counts, CaptureError> {
    run_ready(input, port, limits, stop, shared, None, each)
}

/// [`run`], setting `ready` once the file or the interface is open and its filter in place:
/// what the admin server's `/readyz` waits for, so that traffic sent after it answers is seen.
pub fn run_ready(
    input: &Input,
    port: u16,
    limits: Limits,
    stop: &AtomicBool,
    shared: Option<&Arc<Mutex<Counts>>>,
    ready: Option<&AtomicBool>,
    mut each: impl FnMut(Finished),
) -> Result<Counts, CaptureError> {
    let opened = || {
        if let Some(r) = ready {
            r.store(true, Ordering::Release);
        }
    };
    let mut tracker = Tracker::new(port, limits);
    let publish = |t: &mut Tracker| {
        if let Some(s) = shared {
            *s.lock() = t.counts().clone();
        }
    };
    match input {
        Input::File(path) => {
            let mut cap = open_file(path)?;
            opened();
            let link = Link::from_linktype(cap.get_datalink().0);
            let mut last = Instant::now();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match cap.next_packet() {
                    Ok(p) => {
                        let h = p.header;
                        tracker.frame(ts_us(h), link, p.data, h.len as usize);
                    }
                    Err(pcap::Error::NoMorePackets) => break,
                    Err(e) => return Err(CaptureError::Read(e)),
                }
                tracker.take().into_iter().for_each(&mut each);
                if last.elapsed() > PUBLISH_EVERY {
                    publish(&mut tracker);
                    last = Instant::now();
                }
            }
        }
        Input::Interface(name) => {
            let open = |e| CaptureError::Open {
                what: format!("interface {name}"),
                source: e,
            };
            let mut cap = pcap::Capture::from_device(name.as_str())
                .map_err(open)?
                .snaplen(SNAPLEN)
                .buffer_size(BUFFER_BYTES)
                // Packets come in blocks at least every 100 ms (not immediate mode, whose poll
                // waits for a packet however long), so `stop` and the idle sweep are seen on a
                // quiet interface, and a busy one costs one wake-up per block.
                .timeout(100)
                .open()
                .map_err(open)?
                // Non-blocking, with our own poll below: libpcap's blocking read on Linux can
                // wait for a packet however long, and a quiet interface must still see `stop`.
                .setnonblock()
                .map_err(open)?;
            let f = filter(port);
            cap.filter(&f, true)
                .map_err(|source| CaptureError::Filter {
                    filter: f.clone(),
                    source,
                })?;
            let link = Link::from_linktype(cap.get_datalink().0);
            opened();
            tracing::info!(interface = %name, filter = %f, snaplen = SNAPLEN, "capturing");
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match cap.next_packet() {
                    Ok(p) => {
                        let h = p.header;
                        tracker.frame(ts_us(h), link, p.data, h.len as usize);
                    }
                    Err(pcap::Error::TimeoutExpired) => wait_readable(&cap),
                    Err(e) => return Err(CaptureError::Read(e)),
                }
                tracker.take().into_iter().for_each(&mut each);
                if last.elapsed() > PUBLISH_EVERY {
                    kernel(&mut cap, &mut tracker);
                    publish(&mut tracker);
                    last = Instant::now();
                }
            }
            kernel(&mut cap, &mut tracker);
        }
    }
    tracker.finish();
    tracker.take().into_iter().for_each(&mut each);
    publish(&mut tracker);
    Ok(tracker.counts().clone())
}

/// Waits up to 100 ms for the capture to have packets.
#[cfg(target_os = "linux")]
fn wait_readable(cap: &pcap::Capture<pcap::Active>) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(cap, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let _ = poll(&mut fds, Some(&timeout));
}

#[cfg(not(target_os = "linux"))]
fn wait_readable(_: &pcap::Capture<pcap::Active>) {
    std::thread::sleep(Duration::from_millis(5));
}

fn kernel(cap: &mut pcap::Capture<pcap::Active>, t: &mut Tracker) {
    match cap.stats() {
        Ok(s) => t.set_kernel(
            u64::from(s.received),
            u64::from(s.dropped),
            u64::from(s.if_dropped),
        ),
        Err(e) => tracing::debug!(error = %e, "no kernel statistics"),
    }
}

fn ts_us(h: &pcap::PacketHeader) -> i64 {
    // timeval's fields are i64 on the 64-bit Linux targets we build for.
    let (sec, usec): (i64, i64) = (h.ts.tv_sec, h.ts.tv_usec);
    sec.saturating_mul(1_000_000).saturating_add(usec)
}

/// Opens a pcap or pcapng file; a `.gz` one is decompressed to a temporary file first
/// (libpcap reads only plain files), removed once open.
fn open_file(path: &Path) -> Result<pcap::Capture<pcap::Offline>, CaptureError> {
    let open = |p: &Path| {
        pcap::Capture::from_file(p).map_err(|source| CaptureError::Open {
            what: path.display().to_string(),
            source,
        })
    };
    if path.extension().is_none_or(|e| e != "gz") {
        return open(path);
    }
    let gz = |source| CaptureError::Gzip {
        path: path.to_path_buf(),
        source,
    };
    let mut plain = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| flate2::read::GzDecoder::new(f).read_to_end(&mut plain))
        .map_err(gz)?;
    let tmp = std::env::temp_dir().join(format!(
        "shadowdiff-capture-{}-{}.pcap",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, &plain).map_err(gz)?;
    let cap = open(&tmp);
    let _ = std::fs::remove_file(&tmp);
    cap
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
