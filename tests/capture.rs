//! The capture's own cases: the fuzz corpus replayed on stable, the crafted captures in
//! `sample-traffic/capture/` (each with its expected exchanges), and the bounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shadowdiff::capture::packet::Link;
use shadowdiff::capture::source::{Input, run};
use shadowdiff::capture::write::{Conversation, pcap};
use shadowdiff::capture::{Counts, Finished, Incomplete, Limits, Outcome, Tracker};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_fuzz_corpus_replays_without_a_failure() {
    let dir = root().join("fuzz/corpus/capture");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if let Err(e) = shadowdiff::capture::fuzzing::check(&data) {
            panic!("{}: {e}", f.display());
        }
    }
    assert!(files.len() >= 20, "only {} corpus files", files.len());
}

fn client(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40_000 + u16::from(n))
}

fn server() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 8080)
}

/// The crafted captures: (name, frames, expected `METHOD target -> status` or outcome lines).
fn crafted() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let mut v = Vec::new();

    // Keep-alive with a chunked answer, segments delivered out of order.
    let mut c = Conversation::open(client(1), server(), 1000, 5000, 1_700_000_000_000_000);
    c.send(true, b"GET /orders/1 HTTP/1.1\r\nHost: a\r\n\r\n", 1460);
    c.send(false, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n", 10);
    c.send(true, b"GET /orders/2 HTTP/1.1\r\nHost: a\r\n\r\n", 1460);
    c.send(
        false,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
        1460,
    );
    c.close();
    let mut f = c.frames.clone();
    let n = f.len();
    f.swap(5, 7); // two response segments swapped
    f.swap(n - 6, n - 5);
    v.push((
        "out-of-order.pcap",
        pcap(&f),
        vec!["GET /orders/1 -> 200 {\"a\":1}", "GET /orders/2 -> 404 {}"],
    ));

    // Every segment retransmitted, some twice with overlapping cuts.
    let mut c = Conversation::open(client(2), server(), u32::MAX - 10, 7, 1_700_000_001_000_000);
    c.send(
        true,
        b"POST /pay HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
        9,
    );
    c.send(
        false,
        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
        7,
    );
    c.close();
    let mut f = Vec::new();
    for fr in &c.frames {
        f.push(fr.clone());
        if !fr.payload.is_empty() {
            f.push(fr.clone());
        }
    }
    v.push((
        "retransmitted.pcap",
        pcap(&f),
        vec!["POST /pay -> 201 done"],
    ));

    // True pipelining: three requests in one segment, the answers back to back, one to HEAD.
    let mut c = Conversation::open(client(3), server(), 1, 1, 1_700_000_002_000_000);
    c.send(
        true,
        b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n",
        1460,
    );
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz",
        1460,
    );
    c.close();
    v.push((
        "pipelined.pcap",
        pcap(&c.frames),
        vec!["GET /a -> 200 A", "HEAD /b -> 200 ", "POST /c -> 200 xyz"],
    ));

    // A gap: a response segment was never captured. Its exchange is `gap`; the next pairs.
    let mut c = Conversation::open(client(4), server(), 100, 200, 1_700_000_003_000_000);
    c.send(true, b"GET /one HTTP/1.1\r\n\r\n", 1460);
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n",
        1460,
    );
    c.send(false, b"0123456789", 10);
    c.send(false, b"01234567890123456789", 20);
    c.send(true, b"GET /two HTTP/1.1\r\n\r\n", 1460);
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo",
        1460,
    );
    c.close();
    let mut f = c.frames.clone();
    f.remove(6); // "0123456789"
    v.push((
        "gap.pcap",
        pcap(&f),
        vec!["gap GET /one", "GET /two -> 200 two"],
    ));

    // Closed by RST while the answer was still coming: cut, never a short body.
    let mut c = Conversation::open(client(5), server(), 1, 1, 1_700_000_004_000_000);
    c.send(true, b"GET /big HTTP/1.1\r\n\r\n", 1460);
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
        1460,
    );
    c.reset();
    v.push(("reset.pcap", pcap(&c.frames), vec!["cut GET /big"]));
    v
}

fn describe(f: &Finished) -> String {
    match (&f.outcome, &f.exchange) {
        (Outcome::Complete, Some(x)) => {
            let target = match &x.request.query {
                Some(q) => format!("{}?{q}", x.request.path),
                None => x.request.path.clone(),
            };
            format!(
                "{} {target} -> {} {}",
                x.request.method,
                x.response.status,
                String::from_utf8_lossy(&x.response.body)
            )
        }
        (Outcome::Incomplete(r), _) => format!(
            "{} {}",
            r.as_str(),
            f.request_line.clone().unwrap_or_default()
        ),
        (o, _) => format!("{o:?} {}", f.request_line.clone().unwrap_or_default()),
    }
}

fn read(path: &Path, port: u16) -> (Counts, Vec<String>) {
    let mut out = Vec::new();
    let c = run(
        &Input::File(path.to_path_buf()),
        port,
        Limits::default(),
        &AtomicBool::new(false),
        None,
        |f| out.push(describe(&f)),
    )
    .unwrap();
    (c, out)
}

/// The committed crafted captures are the ones this test builds (regenerate with
/// `SHADOWDIFF_WRITE_SAMPLES=1 cargo test --test capture crafted`), and each gives its
/// expected exchanges through libpcap.
#[test]
fn crafted_captures_give_their_expected_exchanges() {
    let dir = root().join("sample-traffic/capture");
    for (name, bytes, want) in crafted() {
        let path = dir.join(name);
        if std::env::var_os("SHADOWDIFF_WRITE_SAMPLES").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name} differs from what the test builds"
        );
        let (counts, got) = read(&path, 8080);
        assert_eq!(got, want, "{name}");
        assert_eq!(counts.exchanges.total(), want.len() as u64, "{name}");
    }
}

/// `shadowdiff demo --exit` recorded with tcpdump on `lo` (the client-side leg, port 45003):
/// the 600 requests of `sample-traffic/demo.jsonl`, eight keep-alive connections at once.
#[test]
fn the_recorded_demo_traffic_reassembles_completely() {
    let (counts, got) = read(&root().join("sample-traffic/capture/demo-lo.pcap"), 45003);
    let mut want: Vec<String> = std::fs::read_to_string(root().join("sample-traffic/demo.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let r = &v["request"];
            match r["query"].as_str() {
                Some(q) => format!(
                    "{} {}?{q}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap()
                ),
                None => format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap()
                ),
            }
        })
        .collect();
    let mut seen: Vec<String> = got
        .iter()
        .map(|g| g.split(" -> ").next().unwrap().to_string())
        .collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want, "the captured requests are the demo's");
    assert_eq!(counts.exchanges.complete, 600);
    assert_eq!(counts.exchanges.total(), 600);
}

fn feed(t: &mut Tracker, frames: &[shadowdiff::capture::write::Frame]) {
    for f in frames {
        let p = shadowdiff::capture::write::ipv4_tcp(f);
        t.frame(f.ts_us, Some(Link::Raw), &p, p.len());
    }
}

#[test]
fn memory_stays_within_the_total_bound_and_the_oldest_connection_is_evicted() {
    let limits = Limits {
        max_total_bytes: 64 * 1024,
        max_connections: 1000,
        ..Limits::default()
    };
    let mut t = Tracker::new(8080, limits);
    // 40 connections, each with a request waiting and 8 KiB of a response body held.
    for i in 0..40u8 {
        let mut c = Conversation::open(
            client(i),
            server(),
            1,
            1,
            1_700_000_000_000_000 + i64::from(i) * 1000,
        );
        c.send(
            true,
            b"POST /x HTTP/1.1\r\nContent-Length: 8192\r\n\r\n",
            1460,
        );
        c.send(true, &[b'x'; 8192], 1460);
        feed(&mut t, &c.frames);
        assert!(t.memory() <= 64 * 1024 + 9 * 1024, "memory {}", t.memory());
    }
    assert!(t.counts().exchanges.incomplete(Incomplete::Evicted) > 0);
}

#[test]
fn connections_beyond_the_cap_evict_the_least_recent_and_idle_ones_time_out() {
    let limits = Limits {
        max_connections: 4,
        idle_timeout: std::time::Duration::from_secs(5),
        ..Limits::default()
    };
    let mut t = Tracker::new(8080, limits);
    for i in 0..6u8 {
        let mut c = Conversation::open(client(i), server(), 1, 1, 1_700_000_000_000_000);
        c.send(true, b"GET / HTTP/1.1\r\n\r\n", 1460);
        feed(&mut t, &c.frames);
    }
    assert_eq!(t.connections(), 4);
    assert_eq!(t.counts().exchanges.incomplete(Incomplete::Evicted), 2);
    // Ten seconds later, one packet elsewhere: the four idle ones are ended.
    let mut c = Conversation::open(client(9), server(), 1, 1, 1_700_000_010_000_000);
    c.send(true, b"GET / HTTP/1.1\r\n\r\n", 1460);
    feed(&mut t, &c.frames);
    assert_eq!(t.connections(), 1);
    assert_eq!(t.counts().exchanges.incomplete(Incomplete::NoResponse), 4);
}

#[test]
fn a_body_over_the_cap_is_counted_not_compared() {
    let limits = Limits {
        max_body_bytes: 16,
        ..Limits::default()
    };
    let mut t = Tracker::new(8080, limits);
    let mut c = Conversation::open(client(1), server(), 1, 1, 1_700_000_000_000_000);
    c.send(true, b"GET / HTTP/1.1\r\n\r\n", 1460);
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789",
        1460,
    );
    c.close();
    feed(&mut t, &c.frames);
    t.finish();
    assert_eq!(t.counts().exchanges.incomplete(Incomplete::BodyTooLarge), 1);
}

/// A response the server sent unasked (before the next request was sent, as that request's
/// ACK proves) is `no_request`; it does not take the next request's place.
#[test]
fn an_unsolicited_response_does_not_shift_the_pairs() {
    let mut c = Conversation::open(client(7), server(), 1, 1, 1_700_000_000_000_000);
    c.send(true, b"GET /a HTTP/1.1\r\n\r\n", 1460);
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA",
        1460,
    );
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nX",
        1460,
    );
    c.send(true, b"GET /b HTTP/1.1\r\n\r\n", 1460);
    c.send(
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB",
        1460,
    );
    c.close();
    let mut t = Tracker::new(8080, Limits::default());
    feed(&mut t, &c.frames);
    t.finish();
    let got: Vec<String> = t.take().iter().map(describe).collect();
    assert_eq!(got, ["GET /a -> 200 A", "no_request ", "GET /b -> 200 B"]);
}
