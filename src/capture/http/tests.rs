#![allow(clippy::unwrap_used)]

use super::*;
use crate::capture::tcp::Segment;

/// A stream holding `bytes` in segments of `mss`, starting after a SYN.
fn stream(bytes: &[u8], mss: usize) -> Stream {
    let mut s = Stream::default();
    let syn = Segment {
        seq: 0,
        ack: None,
        syn: true,
        fin: false,
        rst: false,
        payload: b"",
        ts_us: 0,
    };
    s.push(&syn, 1 << 20);
    let mut seq = 1u32;
    for (i, c) in bytes.chunks(mss).enumerate() {
        s.push(
            &Segment {
                seq,
                payload: c,
                ts_us: i as i64 + 1,
                syn: false,
                ..syn
            },
            1 << 20,
        );
        seq += c.len() as u32;
    }
    s
}

fn all(r: &mut Reader, s: &mut Stream, closed: bool) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match r.read(s, false, false, closed) {
            Read::Message(m) => out.push(format!(
                "{}{} {}",
                m.head.method,
                if m.head.status > 0 {
                    m.head.status.to_string()
                } else {
                    String::new()
                },
                String::from_utf8_lossy(&m.body)
            )),
            Read::Interim(c) => out.push(format!("interim {c}")),
            Read::NeedMore => return out,
            Read::Gap { partial } => out.push(format!("gap partial={}", partial.is_some())),
            Read::Error(e) => out.push(format!("error {e}")),
            Read::Upgraded => out.push("upgraded".into()),
        }
    }
}

#[test]
fn pipelined_requests_with_lengths_and_chunks_in_one_byte_segments() {
    let wire = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
        GET /d HTTP/1.1\r\n\r\n";
    for mss in [1, 7, 1000] {
        let mut s = stream(wire, mss);
        let mut r = Reader::requests(1 << 20);
        assert_eq!(
            all(&mut r, &mut s, false),
            ["GET ", "POST hello", "POST abcde", "GET "],
            "mss {mss}"
        );
    }
}

#[test]
fn response_framing_head_204_304_1xx_and_until_close() {
    let mut s = stream(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close", 10);
    let mut r = Reader::responses(1 << 20);
    assert_eq!(all(&mut r, &mut s, false), ["interim 100", "204 ", "304 "]);
    assert_eq!(all(&mut r, &mut s, true), ["200 until close"]);

    // A response to HEAD has no body whatever its Content-Length says.
    let mut s = stream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 100);
    let mut r = Reader::responses(1 << 20);
    assert!(
        matches!(r.read(&mut s, true, false, false), Read::Message(m) if m.head.status == 200 && m.body.is_empty())
    );
    assert!(
        matches!(r.read(&mut s, false, false, false), Read::Message(m) if m.head.status == 404)
    );
}

#[test]
fn switching_protocols_ends_http_on_the_connection() {
    let mut s = stream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n\x00\x01binary",
        100,
    );
    let mut r = Reader::responses(1 << 20);
    assert!(
        matches!(r.read(&mut s, false, false, false), Read::Message(m) if m.head.status == 101)
    );
    assert!(matches!(
        r.read(&mut s, false, false, false),
        Read::NeedMore
    ));
}

#[test]
fn invalid_framing_is_an_error_never_a_guess() {
    for wire in [
        &b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"[..],
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
    ] {
        let mut s = stream(wire, 100);
        let mut r = Reader::requests(1 << 20);
        let got = all(&mut r, &mut s, false);
        assert!(
            got[0].starts_with("error"),
            "{got:?} for {:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn a_body_over_the_cap_is_cut_and_flagged() {
    let mut s = stream(
        b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET / HTTP/1.1\r\n\r\n",
        4,
    );
    let mut r = Reader::requests(4);
    let Read::Message(m) = r.read(&mut s, false, false, false) else {
        panic!()
    };
    assert_eq!((m.body.as_slice(), m.body_truncated), (&b"0123"[..], true));
    assert!(
        matches!(r.read(&mut s, false, false, false), Read::Message(m) if m.head.target == "/")
    );
}

#[test]
fn after_a_gap_the_reader_resynchronises_on_a_message_start() {
    let mut s = Stream::default();
    let seg = |seq: u32, p: &'static [u8]| Segment {
        seq,
        ack: None,
        syn: false,
        fin: false,
        rst: false,
        payload: p,
        ts_us: 0,
    };
    let a = b"POST /a HTTP/1.1\r\nContent-Length: 20\r\n\r\n0123";
    s.push(&seg(1000, a), 1 << 20);
    // 16 body bytes missing, then the rest of a segment, then a new request.
    let tail: &'static [u8] = b"xyz";
    s.push(&seg(1000 + a.len() as u32 + 16, tail), 1 << 20);
    s.push(
        &seg(1000 + a.len() as u32 + 19, b"GET /b HTTP/1.1\r\n\r\n"),
        1 << 20,
    );
    let mut r = Reader::requests(1 << 20);
    assert!(matches!(
        r.read(&mut s, false, false, false),
        Read::NeedMore
    ));
    s.close();
    assert_eq!(all(&mut r, &mut s, false), ["gap partial=true", "GET "]);
}
