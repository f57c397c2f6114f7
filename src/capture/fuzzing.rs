//! The fuzz property of the capture (`fuzz/fuzz_targets/capture.rs`; its corpus is replayed
//! on stable by `tests/capture.rs`). Two modes, chosen by the first byte:
//!
//! - **metamorphic**: the input describes up to 8 exchanges (methods, HEAD, bodies by
//!   Content-Length or chunked, 1xx interim answers), cut into segments of input-chosen sizes,
//!   reordered within a window and partly duplicated. Nothing is lost, so every exchange must
//!   come out complete and byte-identical to what was sent, whatever the order;
//! - **raw**: arbitrary segments (any flags, sequence numbers, payloads) on a tracker with tiny
//!   bounds: no panic, memory within the bounds, every exchange counted once.

use super::write::{Frame, ipv4_tcp};
use super::{Limits, Outcome, Tracker, packet::Link};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const PORT: u16 = 8080;

/// Checks the property on one input; `Err` describes the violation.
pub fn check(data: &[u8]) -> Result<(), String> {
    match data.split_first() {
        Some((m, rest)) if m % 2 == 0 => metamorphic(rest),
        Some((_, rest)) => raw(rest),
        None => Ok(()),
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
}

fn addr(host: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, host), port)
}

#[derive(Debug)]
struct Expected {
    method: &'static str,
    path: String,
    req_body: Vec<u8>,
    status: u16,
    resp_body: Vec<u8>,
}

fn body(len: usize, chunked: bool, b: &mut Bytes<'_>) -> (Vec<u8>, Vec<u8>, String) {
    let content: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    if !chunked {
        return (
            content.clone(),
            content,
            format!("Content-Length: {len}\r\n"),
        );
    }
    let mut wire = Vec::new();
    let mut rest = &content[..];
    while !rest.is_empty() {
        let n = (usize::from(b.next() % 16) + 1).min(rest.len());
        wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        wire.extend_from_slice(&rest[..n]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    (wire, content, "Transfer-Encoding: chunked\r\n".into())
}

fn metamorphic(input: &[u8]) -> Result<(), String> {
    let mut b = Bytes(input);
    let n = usize::from(b.next() % 8) + 1;
    let (mut client, mut server, mut want) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let method = ["GET", "POST", "HEAD", "PUT", "DELETE"][usize::from(b.next() % 5)];
        let path = format!("/r/{i}?q={}", b.next());
        let (req_wire, req_body, req_frame) = if method == "POST" || method == "PUT" {
            let len = usize::from(b.next() % 40);
            body(len, b.next() % 2 == 0, &mut b)
        } else {
            (Vec::new(), Vec::new(), String::new())
        };
        client.extend_from_slice(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{req_frame}\r\n").as_bytes(),
        );
        client.extend_from_slice(&req_wire);
        let status = [200, 201, 204, 304, 404, 500][usize::from(b.next() % 6)];
        if b.next() % 4 == 0 {
            server.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let len = usize::from(b.next() % 60);
        let no_body = method == "HEAD" || status == 204 || status == 304;
        let (wire, content, frame) = if no_body {
            (Vec::new(), Vec::new(), format!("Content-Length: {len}\r\n"))
        } else {
            body(len, b.next() % 2 == 0, &mut b)
        };
        server.extend_from_slice(format!("HTTP/1.1 {status} X\r\n{frame}\r\n").as_bytes());
        server.extend_from_slice(&wire);
        want.push(Expected {
            method,
            path,
            req_body,
            status,
            resp_body: content,
        });
    }
    // Segments, then a reordering within a window and some duplicates.
    let (c, s) = (addr(1, 40000), addr(2, PORT));
    let (cisn, sisn) = (
        u32::MAX - u32::from(b.next()) * 7,
        1_000u32.wrapping_mul(u32::from(b.next())),
    );
    let mut segs: Vec<(bool, u32, Vec<u8>)> = Vec::new();
    for (from_client, data, isn) in [(true, &client, cisn), (false, &server, sisn)] {
        let mut off = 0usize;
        while off < data.len() {
            let n = (usize::from(b.next() % 64) + 1).min(data.len() - off);
            let seq = isn.wrapping_add(1).wrapping_add(off as u32);
            segs.push((from_client, seq, data[off..off + n].to_vec()));
            off += n;
        }
    }
    for i in 0..segs.len() {
        let j = (i + usize::from(b.next() % 4)).min(segs.len() - 1);
        segs.swap(i, j);
    }
    let dups: Vec<_> = segs.iter().filter(|_| b.next() % 5 == 0).cloned().collect();
    segs.extend(dups);
    let mut frames = vec![
        frame(c, s, cisn, None, true, b""),
        frame(s, c, sisn, Some(cisn.wrapping_add(1)), true, b""),
    ];
    for (from_client, seq, p) in &segs {
        let (src, dst, ack) = if *from_client {
            (c, s, sisn.wrapping_add(1))
        } else {
            (s, c, cisn.wrapping_add(1))
        };
        frames.push(frame(src, dst, *seq, Some(ack), false, p));
    }
    let mut t = Tracker::new(PORT, Limits::default());
    for (i, f) in frames.iter_mut().enumerate() {
        f.ts_us = 1_000_000 + i as i64;
        let pkt = ipv4_tcp(f);
        t.frame(f.ts_us, Some(Link::Raw), &pkt, pkt.len());
    }
    t.finish();
    let got = t.take();
    if got.len() != want.len() {
        return Err(format!(
            "{} exchanges out of {}: {got:?}",
            got.len(),
            want.len()
        ));
    }
    for (g, w) in got.iter().zip(&want) {
        let Some(x) = g
            .exchange
            .as_ref()
            .filter(|_| g.outcome == Outcome::Complete)
        else {
            return Err(format!("{:?} for {w:?}", g.outcome));
        };
        let target = match &x.request.query {
            Some(q) => format!("{}?{q}", x.request.path),
            None => x.request.path.clone(),
        };
        if x.request.method != w.method
            || target != w.path
            || x.request.body != w.req_body
            || x.response.status != w.status
            || x.response.body != w.resp_body
        {
            return Err(format!("got {x:?}, sent {w:?}"));
        }
    }
    Ok(())
}

fn frame(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    p: &[u8],
) -> Frame {
    Frame {
        ts_us: 0,
        src,
        dst,
        seq,
        ack,
        syn,
        fin: false,
        rst: false,
        payload: p.to_vec(),
    }
}

fn raw(input: &[u8]) -> Result<(), String> {
    let limits = Limits {
        max_body_bytes: 64,
        max_stream_bytes: 256,
        max_total_bytes: 1024,
        max_connections: 3,
        idle_timeout: Duration::from_millis(50),
        reorder_window: Duration::from_millis(5),
    };
    let slack = 3 * (2 * 256 + 4 * (64 + 256)) + 2048;
    let mut t = Tracker::new(PORT, limits);
    let mut b = Bytes(input);
    let mut ts = 0i64;
    let mut emitted = 0u64;
    while !b.0.is_empty() {
        let op = b.next();
        let client = addr(1, 40000 + u16::from(op % 4));
        let (src, dst) = if op & 0x10 == 0 {
            (client, addr(2, PORT))
        } else {
            (addr(2, PORT), client)
        };
        let seq = u32::from_be_bytes([b.next(), b.next(), 0, b.next()]);
        let len = usize::from(b.next() % 96).min(b.0.len());
        let (payload, rest) = b.0.split_at(len);
        b.0 = rest;
        ts += i64::from(op >> 5) * 3_000;
        let mut f = frame(
            src,
            dst,
            seq,
            (op & 0x04 != 0).then_some(seq ^ 0x55),
            op & 0x08 != 0,
            payload,
        );
        f.fin = op & 0x40 != 0 && op & 0x20 != 0;
        f.rst = op == 0xff;
        f.ts_us = ts;
        let pkt = ipv4_tcp(&f);
        // Sometimes cut the frame (snaplen) or hand it over as another link type.
        if op & 0x03 == 3 {
            t.frame(ts, Some(Link::Raw), &pkt[..pkt.len() / 2], pkt.len());
        } else {
            t.frame(ts, Some(Link::Raw), &pkt, pkt.len());
        }
        emitted += t.take().len() as u64;
        if t.memory() > slack {
            return Err(format!("memory {} beyond the bounds", t.memory()));
        }
        if t.connections() > 3 {
            return Err(format!("{} connections", t.connections()));
        }
    }
    t.finish();
    emitted += t.take().len() as u64;
    let counted = t.counts().exchanges.total();
    if counted != emitted {
        return Err(format!("{emitted} exchanges handed out, {counted} counted"));
    }
    Ok(())
}
