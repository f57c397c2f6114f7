//! Helper for `benches/load.sh`: a JSON backend with an optional delay, and an open-loop load
//! generator (requests sent on a fixed schedule; latency measured from the scheduled time, so a
//! stalled proxy cannot hide its stalls — no coordinated omission).
//!
//! `loadtool backend PORT DELAY_MS VARIANT` · `loadtool open URL RATE SECONDS` ·
//! `loadtool hostile PORT MODE` (a candidate whose answer never ends, is huge or drips:
//! `benches/hostile.sh`)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn body(variant: &str) -> Bytes {
    // ~1 KB of order JSON; the variant changes only a volatile field.
    let items: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{i:04}","qty":{},"price":{}.99,"name":"Item number {i}"}}"#,
                i + 1,
                10 + i
            )
        })
        .collect();
    Bytes::from(format!(
        r#"{{"id":12345,"status":"shipped","customer":{{"id":77,"name":"Ada Lovelace"}},"items":[{}],"total":123.45,"meta":{{"generated_at":"2026-11-23T10:00:00.{variant}Z"}}}}"#,
        items.join(",")
    ))
}

async fn backend(port: u16, delay: Duration, variant: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let body = body(&variant);
    loop {
        let (s, _) = listener.accept().await.unwrap();
        let _ = s.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        // Read the request body whole (POST benchmarks), as a real service would.
                        let _ = req.into_body().collect().await;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

/// How a hostile candidate answers (`benches/hostile.sh`).
#[derive(Clone, Copy)]
enum Hostile {
    /// Chunked, 64 KiB chunks, never the last one.
    EndlessChunked,
    /// No framing (`connection: close`): the body ends when the connection does, so never.
    EndlessClose,
    /// `content-length` of 200 MiB, sent at full speed.
    Huge,
    /// `content-length` of 1 MiB, one byte every 5 ms.
    SlowDrip,
}

/// Reads one request (head and `content-length` body) from `s`; false when the peer is gone.
async fn read_request(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return true;
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn hostile(port: u16, mode: Hostile) {
    use tokio::io::AsyncWriteExt;
    // The candidate stands for another machine, but here it shares a core with the load
    // generator and the primary: a small send buffer keeps an answer that is never read (or read
    // only to the proxy's cap) from costing this core megabytes of copying per request, which
    // would slow the primary and the generator and show up as the proxy's latency.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.bind(([127, 0, 0, 1], port).into()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let data = Bytes::from(vec![b'x'; 64 * 1024]);
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(b"\r\n");
    let chunk = Bytes::from(chunk);
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.set_nodelay(true);
        let (data, chunk) = (data.clone(), chunk.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while read_request(&mut s, &mut buf).await {
                let ok = match mode {
                    Hostile::EndlessChunked => {
                        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                        let mut r = s.write_all(head).await;
                        while r.is_ok() {
                            r = s.write_all(&chunk).await;
                        }
                        false
                    }
                    Hostile::EndlessClose => {
                        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                        let mut r = s.write_all(head).await;
                        while r.is_ok() {
                            r = s.write_all(&data).await;
                        }
                        false
                    }
                    Hostile::Huge => {
                        let total = 200usize << 20;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
                        );
                        let mut r = s.write_all(head.as_bytes()).await;
                        let mut sent = 0;
                        while r.is_ok() && sent < total {
                            r = s.write_all(&data).await;
                            sent += data.len();
                        }
                        r.is_ok()
                    }
                    Hostile::SlowDrip => {
                        let total = 1usize << 20;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
                        );
                        let mut r = s.write_all(head.as_bytes()).await;
                        let mut sent = 0;
                        while r.is_ok() && sent < total {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            r = s.write_all(b"x").await;
                            sent += 1;
                        }
                        r.is_ok()
                    }
                };
                if !ok {
                    return;
                }
            }
        });
    }
}

/// A periodic kernel timer (timerfd) read through tokio: tokio's own timers have millisecond
/// resolution, so `sleep_until` would release requests in 1 ms batches and add up to a
/// millisecond of the generator's lateness to every latency, masking what is measured. A timerfd
/// fires on the high-resolution clock; each read says how many periods have passed.
struct Ticker {
    fd: tokio::io::unix::AsyncFd<rustix::fd::OwnedFd>,
}

impl Ticker {
    fn every(period: Duration) -> Ticker {
        use rustix::time::{
            Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
            timerfd_settime,
        };
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .unwrap();
        let ts = Timespec {
            tv_sec: period.as_secs() as _,
            tv_nsec: period.subsec_nanos() as _,
        };
        timerfd_settime(
            &fd,
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: ts,
                it_value: ts,
            },
        )
        .unwrap();
        // `AsyncFd::new` is deprecated because a borrowed fd could be closed while registered;
        // this one is an `OwnedFd` moved in, so it lives exactly as long as the registration.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(fd).unwrap();
        Ticker { fd }
    }

    /// Waits for the next expiry; returns how many periods elapsed since the last read.
    async fn tick(&self) -> u64 {
        loop {
            let mut guard = self.fd.readable().await.unwrap();
            let mut buf = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut buf) {
                Ok(8) => return u64::from_ne_bytes(buf),
                Ok(_) => unreachable!("timerfd reads are 8 bytes"),
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(e) => panic!("timerfd read: {e}"),
            }
        }
    }
}

async fn open_loop(url: String, rate: u64, secs: u64) {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let uri: hyper::Uri = url.parse().unwrap();
    let hist = Arc::new(parking_lot::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let ticker = Ticker::every(interval);
    // Request i is due at start + (i + 1) · interval, the timer's (i + 1)-th expiry.
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut sent = 0u64;
    let mut late_ticks = 0u64;
    // How late the generator itself released each request (scheduled → spawned): what the
    // latency figures owe to the generator rather than to the target.
    let mut lag = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    // With LOADTOOL_TRACE set: the worst latency per 100 ms of schedule, to see when stalls happen.
    let trace: Option<Arc<Vec<std::sync::atomic::AtomicU64>>> = std::env::var_os("LOADTOOL_TRACE")
        .map(|_| Arc::new((0..secs * 10 + 1).map(|_| Default::default()).collect()));
    while sent < total {
        let due = ticker.tick().await;
        if due > 1 {
            late_ticks += 1;
        }
        for _ in 0..due.min(total - sent) {
            sent += 1;
            let scheduled = start + interval * sent as u32;
            lag.record((scheduled.elapsed().as_micros() as u64).max(1))
                .unwrap();
            let (client, uri, hist, errors, trace) = (
                client.clone(),
                uri.clone(),
                hist.clone(),
                errors.clone(),
                trace.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let ok = match client.get(uri).await {
                    Ok(r) => r.into_body().collect().await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let us = scheduled.elapsed().as_micros() as u64;
                hist.lock().record(us.max(1)).unwrap();
                if let Some(t) = trace {
                    let slot = (scheduled - start).as_millis() as usize / 100;
                    t[slot.min(t.len() - 1)].fetch_max(us, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    if let Some(t) = trace {
        let worst: Vec<String> = t
            .iter()
            .map(|v| v.load(std::sync::atomic::Ordering::Relaxed).to_string())
            .collect();
        eprintln!("worst latency per 100 ms (µs): {}", worst.join(" "));
    }
    let h = hist.lock();
    // late_ticks: wake-ups that found more than one request due (the generator itself fell
    // behind; those requests still count from their scheduled time).
    println!(
        "{{\"rate\":{rate},\"requests\":{},\"errors\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"late_ticks\":{late_ticks},\"gen_lag_p99_us\":{},\"gen_lag_max_us\":{}}}",
        h.len(),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        lag.value_at_quantile(0.99),
        lag.max()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("backend") => rt.block_on(backend(
            args[2].parse().unwrap(),
            Duration::from_millis(args[3].parse().unwrap()),
            args.get(4).cloned().unwrap_or_else(|| "000".into()),
        )),
        Some("open") => rt.block_on(open_loop(
            args[2].clone(),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        )),
        Some("hostile") => {
            let mode = match args[3].as_str() {
                "endless-chunked" => Hostile::EndlessChunked,
                "endless-close" => Hostile::EndlessClose,
                "huge" => Hostile::Huge,
                "slow-drip" => Hostile::SlowDrip,
                m => panic!("unknown hostile mode {m}"),
            };
            rt.block_on(hostile(args[2].parse().unwrap(), mode))
        }
        _ => eprintln!(
            "usage: loadtool backend PORT DELAY_MS [VARIANT] | open URL RATE SECONDS | hostile PORT endless-chunked|endless-close|huge|slow-drip"
        ),
    }
}
