//! Shared by the admin API and gate CLI tests: feeding `Stats` and running an admin server on
//! 127.0.0.1:0 in its own runtime thread.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use shadowdiff::admin::{AdminState, serve};
use shadowdiff::compare::{DiffKind, Difference, SkipReason, Verdict, VerdictKind};
use shadowdiff::event::{Event, EventRequest, EventResponse, SCHEMA};
use shadowdiff::pipeline::{Observation, Sink};
use shadowdiff::stats::{DEFAULT_MAX_ENDPOINTS, ManualClock, Stats, StatsConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ))
}

pub fn stats(clock: &Arc<ManualClock>) -> Arc<Stats> {
    Arc::new(Stats::with_clock(
        StatsConfig::default(),
        DEFAULT_MAX_ENDPOINTS,
        clock.clone(),
    ))
}

pub fn diff(field: &str, kind: DiffKind, noise: bool) -> Difference {
    Difference {
        path: field.into(),
        field: field.into(),
        kind,
        primary: serde_json::json!(1),
        candidate: serde_json::json!(2),
        noise,
        detail: None,
    }
}

/// Feeds observations and numbers published events in order, so ids sort like arrival.
pub struct Feeder {
    pub stats: Arc<Stats>,
    seq: AtomicU64,
}

impl Feeder {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            stats,
            seq: AtomicU64::new(0),
        }
    }

    /// One observation. `diffs`/`sig` only for mismatches; candidate latency `None` for errors.
    pub fn feed(
        &self,
        endpoint: &str,
        kind: VerdictKind,
        skip: Option<SkipReason>,
        diffs: Vec<Difference>,
        sig: Option<&str>,
        lat: (Option<u64>, Option<u64>),
    ) {
        let v = Verdict {
            secondary_differences: None,
            kind,
            skip_reason: skip,
            differences: diffs,
            signature: sig.map(str::to_string),
            notes: vec![],
            truncated: false,
        };
        let published = matches!(
            kind,
            VerdictKind::Mismatch | VerdictKind::CandidateError | VerdictKind::Noise
        );
        let ev = published.then(|| {
            let n = self.seq.fetch_add(1, Ordering::SeqCst);
            Arc::new(event(&format!("01TEST{n:08}"), endpoint, &v))
        });
        let o = Observation {
            ts: SystemTime::now(),
            endpoint,
            verdict: &v,
            primary_latency: lat.0.map(Duration::from_micros),
            candidate_latency: lat.1.map(Duration::from_micros),
            secondary_latency: None,
            send_skew: None,
            event: ev.as_ref(),
        };
        self.stats.observe(&o);
    }

    pub fn many(&self, n: usize, endpoint: &str, kind: VerdictKind) {
        for _ in 0..n {
            let (diffs, sig) = if kind == VerdictKind::Mismatch {
                (vec![diff("/x", DiffKind::Value, false)], Some("sig-x"))
            } else {
                (vec![], None)
            };
            self.feed(endpoint, kind, None, diffs, sig, (Some(1000), Some(1000)));
        }
    }
}

pub fn event(id: &str, endpoint: &str, v: &Verdict) -> Event {
    let resp = |status| EventResponse {
        status: Some(status),
        latency_us: Some(1000),
        headers: BTreeMap::new(),
        body: serde_json::json!({"k": status}),
        error: None,
    };
    Event {
        schema: SCHEMA.into(),
        id: id.into(),
        ts: "2027-01-15T08:00:00.000Z".into(),
        source: "proxy".into(),
        instance: "test".into(),
        endpoint: endpoint.into(),
        request: EventRequest {
            method: "GET".into(),
            path: "/x".into(),
            query: None,
            headers: BTreeMap::new(),
            body: serde_json::Value::Null,
        },
        primary: resp(200),
        candidate: Some(resp(200)),
        secondary: None,
        verdict: v.kind,
        skip_reason: v.skip_reason,
        differences: v.differences.clone(),
        signature: v.signature.clone(),
        notes: vec![],
        truncated: false,
        sends: None,
    }
}

/// An admin server running on its own runtime thread; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub ready: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(state: AdminState) -> Server {
        let ready = state.ready.clone();
        let (addr_tx, addr_rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                serve(l, state, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        // The listener is bound before the address is sent, so connections queue from here on.
        let addr = addr_rx.recv().unwrap();
        Server {
            addr,
            ready,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blocking GET over a real socket: (status, body).
pub fn get(addr: SocketAddr, path_and_query: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(&buf).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial response"),
    };
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let code = resp.code.unwrap();
    let body = if chunked {
        dechunk(&buf[n..])
    } else {
        buf[n..].to_vec()
    };
    (code, String::from_utf8(body).unwrap())
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        b = &b[i + 2..];
        if len == 0 {
            return out;
        }
        out.extend_from_slice(&b[..len]);
        b = &b[len + 2..];
    }
}

pub fn get_json(addr: SocketAddr, pq: &str) -> (u16, serde_json::Value) {
    let (code, body) = get(addr, pq);
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{pq}: {e}: {body}"));
    (code, v)
}
