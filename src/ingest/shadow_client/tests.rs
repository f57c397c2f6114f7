use super::*;
use crate::ingest::resolve::Resolver;
use crate::pipeline::budget::Budget;
use bytes::BytesMut;
use http::HeaderValue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::AsyncRead;
use tokio::io::{AsyncBufReadExt, BufReader, ReadBuf};
use tokio::net::TcpListener;

/// Hands out its bytes in reads of the given sizes (cycled), like a socket under load.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    steps: Vec<usize>,
    turn: usize,
}

impl Trickle {
    fn new(data: &[u8], steps: &[usize]) -> Self {
        Self {
            data: data.to_vec(),
            pos: 0,
            steps: steps.to_vec(),
            turn: 0,
        }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let step = self.steps[self.turn % self.steps.len()].max(1);
        self.turn += 1;
        let n = step.min(buf.remaining()).min(self.data.len() - self.pos);
        let from = self.pos;
        buf.put_slice(&self.data[from..from + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn read(raw: &[u8], steps: &[usize], head: bool, cap: usize) -> Result<(Answer, bool), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut held = Reservation::default();
    rt.block_on(read_answer(
        &mut Trickle::new(raw, steps),
        head,
        cap,
        &mut held,
    ))
}

fn is_invalid(e: &ShadowError) -> bool {
    matches!(e, ShadowError::Upstream(UpstreamError::Other(m)) if m.starts_with("invalid answer"))
}

fn framing(raw: &str, head: bool) -> (Framing, bool) {
    let (h, n) = parse_head(raw.as_bytes(), head).unwrap().unwrap();
    assert_eq!(n, raw.len());
    (h.framing, h.keep_alive)
}

#[test]
fn framing_follows_rfc_9112() {
    use Framing::*;
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
        (Length(5), true)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false),
        (Length(5), true)
    );
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            false
        ),
        (Chunked, true)
    );
    // Both framings: transfer-encoding wins and the connection is not reused.
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n",
            false
        ),
        (Chunked, false)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false),
        (UntilClose, false)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\n\r\n", false),
        (UntilClose, false)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true),
        (Empty, true)
    );
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\n\r\n", false),
        (Empty, true)
    );
    assert_eq!(
        framing(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
            false
        ),
        (Empty, true)
    );
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 1\r\n\r\n",
            false
        ),
        (Length(1), false)
    );
    assert_eq!(
        framing("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false),
        (Length(1), false)
    );
    assert_eq!(
        framing(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n",
            false
        ),
        (Length(1), true)
    );
}

#[test]
fn bad_heads_are_invalid_and_partial_heads_wait() {
    for raw in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1e3\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "SMTP ready\r\n\r\n",
    ] {
        assert!(
            matches!(
                parse_head(raw.as_bytes(), false),
                Err(e) if is_invalid(&e)
            ),
            "{raw:?}"
        );
    }
    assert!(
        parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", false)
            .unwrap()
            .is_none()
    );
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n\
5;name=value\r\nhello\r\n1A\r\n, and a chunk of 26 bytes!\r\n0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n";

#[test]
fn chunked_answers_decode_whatever_the_reads() {
    for steps in [&[1][..], &[2, 3], &[7], &[100], &[4096]] {
        let (a, reusable) = read(CHUNKED, steps, false, 1024).unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["content-type"], "text/plain");
        assert_eq!(
            &a.body[..],
            b"hello, and a chunk of 26 bytes!",
            "reads of {steps:?}"
        );
        assert!(reusable);
    }
}

#[test]
fn interim_answers_are_skipped_and_101_refused() {
    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok";
    let (a, reusable) = read(raw, &[3], false, 1024).unwrap();
    assert_eq!((a.status, &a.body[..], reusable), (201, &b"ok"[..], true));
    let up = read(
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        &[64],
        false,
        1024,
    );
    assert!(matches!(up, Err(Failure { error, .. }) if is_invalid(&error)));
}

#[test]
fn bodies_end_where_their_framing_says() {
    // Bytes after a content-length body: the body is right, the connection is not reused.
    let (a, reusable) = read(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcEXTRA",
        &[64],
        false,
        64,
    )
    .unwrap();
    assert_eq!((&a.body[..], reusable), (&b"abc"[..], false));
    // Close-delimited: everything to the end.
    let (a, reusable) = read(b"HTTP/1.1 200 OK\r\n\r\nto the end", &[4], false, 64).unwrap();
    assert_eq!((&a.body[..], reusable), (&b"to the end"[..], false));
    // HEAD: a content-length but no body.
    let (a, reusable) = read(
        b"HTTP/1.1 200 OK\r\ncontent-length: 300\r\n\r\n",
        &[64],
        true,
        64,
    )
    .unwrap();
    assert_eq!((a.body.len(), reusable), (0, true));
}

#[test]
fn truncated_answers_are_resets_and_say_whether_anything_came() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\ncontent-le",
    ] {
        let r = read(raw, &[5], false, 64);
        assert!(
            matches!(
                r,
                Err(Failure {
                    error: ShadowError::Upstream(UpstreamError::Reset(_)),
                    answered: true
                })
            ),
            "{raw:?}"
        );
    }
    let r = read(b"", &[5], false, 64);
    assert!(matches!(
        r,
        Err(Failure {
            error: ShadowError::Upstream(UpstreamError::Reset(_)),
            answered: false
        })
    ));
}

#[test]
fn the_cap_and_the_budget_stop_reading() {
    let over = |raw: &[u8]| read(raw, &[16], false, 8);
    for raw in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n123456789"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n12345\r\n4\r\n6789\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n123456789",
    ] {
        assert!(
            matches!(over(raw), Err(Failure { error: ShadowError::TooLarge(8), .. })),
            "{raw:?}"
        );
    }
    // Exactly at the cap is kept.
    assert!(
        read(
            b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n12345678",
            &[16],
            false,
            8
        )
        .is_ok()
    );

    // The read buffer is reserved too: room for it and 8 body bytes.
    let budget = Budget::new(FIRST_READ + 8);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut held = budget.reservation();
    let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n123456789";
    let r = rt.block_on(read_answer(
        &mut Trickle::new(raw, &[64]),
        false,
        64,
        &mut held,
    ));
    assert!(matches!(
        r,
        Err(Failure {
            error: ShadowError::OverBudget(_),
            ..
        })
    ));
    assert_eq!(budget.used(), 0);
    let mut held = budget.reservation();
    let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n12345";
    rt.block_on(read_answer(
        &mut Trickle::new(raw, &[64]),
        false,
        64,
        &mut held,
    ))
    .unwrap();
    assert_eq!((held.bytes(), budget.used()), (5, 5));
}

#[test]
fn chunk_sizes_are_hex_and_bounded() {
    assert_eq!(chunk_size(b"1A;ext=\"v\"").unwrap(), 26);
    assert_eq!(chunk_size(b"ff ").unwrap(), 255);
    for bad in [&b""[..], b"+a", b"zz", b"-1", b"1234567890abcdef0"] {
        assert!(chunk_size(bad).is_err(), "{bad:?}");
    }
    let mut d = Chunked::default();
    let mut buf = BytesMut::from(&b"3\r\nabcd\r\n"[..]);
    assert!(
        d.decode(&mut buf, |_| Ok(())).is_err(),
        "chunk longer than its size"
    );
    let mut d = Chunked::default();
    let mut buf = BytesMut::from(vec![b'1'; MAX_CHUNK_LINE + 2].as_slice());
    assert!(d.decode(&mut buf, |_| Ok(())).is_err(), "endless size line");
}

/// A random answer with the body it must decode to.
fn random_answer(rng: &mut StdRng) -> (Vec<u8>, Vec<u8>, bool) {
    let body: Vec<u8> = (0..rng.random_range(0..3000))
        .map(|_| rng.random())
        .collect();
    let mut raw = b"HTTP/1.1 200 OK\r\nx-a: 1\r\n".to_vec();
    let reusable = match rng.random_range(0..3) {
        0 => {
            raw.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            raw.extend_from_slice(&body);
            true
        }
        1 => {
            raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len().min(700));
                let ext = if rng.random_bool(0.3) { ";x=y" } else { "" };
                raw.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                raw.extend_from_slice(&rest[..n]);
                raw.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            raw.extend_from_slice(b"0\r\n");
            if rng.random_bool(0.5) {
                raw.extend_from_slice(b"x-trailer: t\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            true
        }
        _ => {
            raw.extend_from_slice(b"\r\n");
            raw.extend_from_slice(&body);
            false
        }
    };
    (raw, body, reusable)
}

/// Fuzzing with a fixed seed: any framing, split into any reads, decodes to its body; the same
/// answers with bytes flipped, cut or inserted never panic and never yield more than the cap.
#[test]
fn random_answers_and_mutations_of_them() {
    let mut rng = StdRng::seed_from_u64(0x5ad0_d1ff);
    for _ in 0..400 {
        let (raw, body, reusable) = random_answer(&mut rng);
        let steps: Vec<usize> = (0..4).map(|_| rng.random_range(1..600)).collect();
        let (a, r) = read(&raw, &steps, false, 4096).unwrap();
        assert_eq!(&a.body[..], &body[..]);
        assert_eq!(r, reusable);

        let mut bad = raw.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bad.len());
            match rng.random_range(0..3) {
                0 => bad[at] = rng.random(),
                1 => bad.truncate(at),
                _ => bad.insert(at, rng.random()),
            }
            if bad.is_empty() {
                break;
            }
        }
        if let Ok((a, _)) = read(&bad, &steps, false, 2048) {
            assert!(a.body.len() <= 2048);
        }
    }
}

#[test]
fn requests_carry_their_own_framing_and_a_host() {
    let mut h = HeaderMap::new();
    h.insert("x-trace", HeaderValue::from_static("t1"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let post = ShadowRequest {
        method: &Method::POST,
        path_and_query: "/orders?x=1",
        headers: &h,
        body: b"{}",
    };
    assert_eq!(
        String::from_utf8(encode_request(&post, "cand:9", true)).unwrap(),
        "POST /orders?x=1 HTTP/1.1\r\nhost: cand:9\r\nx-trace: t1\r\ncontent-length: 2\r\n\r\n{}"
    );
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("shop.example"));
    let get = ShadowRequest {
        method: &Method::GET,
        path_and_query: "",
        headers: &h,
        body: b"",
    };
    assert_eq!(
        String::from_utf8(encode_request(&get, "cand:9", true)).unwrap(),
        "GET / HTTP/1.1\r\nhost: shop.example\r\n\r\n"
    );
    let empty_put = ShadowRequest {
        method: &Method::PUT,
        ..get
    };
    assert!(
        String::from_utf8(encode_request(&empty_put, "c", true))
            .unwrap()
            .ends_with("content-length: 0\r\n\r\n")
    );
}

/// A candidate on a real socket: answers each request on a connection with `ok`, at most
/// `per_conn` of them (then closes without saying so, as a server's idle timeout does), adding
/// `connection: close` when asked. Counts the connections it accepted.
async fn server(per_conn: usize, say_close: bool) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                for _ in 0..per_conn {
                    // Read one head (the test requests have no body).
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let close = if say_close {
                        "connection: close\r\n"
                    } else {
                        ""
                    };
                    let answer = format!("HTTP/1.1 200 OK\r\n{close}content-length: 2\r\n\r\nok");
                    if w.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
                // Read (and drop) one more request before closing: the client's write
                // succeeds and the close arrives while it waits for the answer.
                let mut line = String::new();
                let _ = r.read_line(&mut line).await;
            });
        }
    });
    (addr, accepted)
}

async fn get(c: &ShadowClient, method: &Method) -> Result<Answer, ShadowError> {
    let h = HeaderMap::new();
    let req = ShadowRequest {
        method,
        path_and_query: "/x",
        headers: &h,
        body: b"",
    };
    c.send(&req, 1024, &mut Reservation::default()).await
}

#[tokio::test]
async fn connections_are_reused_and_bounded() {
    let (addr, accepted) = server(usize::MAX, false).await;
    let c = client(&addr, Duration::from_secs(60));
    for _ in 0..5 {
        assert_eq!(&get(&c, &Method::GET).await.unwrap().body[..], b"ok");
    }
    assert_eq!((accepted.load(Ordering::SeqCst), c.idle()), (1, 1));
    // Ten at once need ten connections; four of them stay.
    // Polled together, so every request is out before any answer returns a connection.
    let all = futures_util::future::join_all((0..10).map(|_| get(&c, &Method::GET))).await;
    assert!(all.iter().all(|r| r.is_ok()));
    assert_eq!(c.idle(), 4);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let (addr, accepted) = server(1, true).await;
    let c = client(&addr, Duration::from_secs(60));
    for _ in 0..3 {
        get(&c, &Method::GET).await.unwrap();
    }
    assert_eq!((accepted.load(Ordering::SeqCst), c.idle()), (3, 0));
}

#[tokio::test]
async fn a_kept_connection_closed_under_a_request_is_retried_only_when_idempotent() {
    // One answer per connection, then the server reads the next request and closes silently.
    let (addr, accepted) = server(1, false).await;
    let c = client(&addr, Duration::from_secs(60));
    get(&c, &Method::GET).await.unwrap();
    assert_eq!(&get(&c, &Method::GET).await.unwrap().body[..], b"ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "retried on a new connection"
    );
    // A POST on such a connection is not sent again: the candidate may have acted on it.
    let post = get(&c, &Method::POST).await;
    assert!(
        matches!(post, Err(ShadowError::Upstream(UpstreamError::Reset(_)))),
        "{post:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refused_and_idle_expiry() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let c = client(&addr, Duration::from_secs(60));
    assert!(matches!(
        get(&c, &Method::GET).await,
        Err(ShadowError::Upstream(UpstreamError::Refused(_)))
    ));

    let (addr, accepted) = server(usize::MAX, false).await;
    let c = client(&addr, Duration::ZERO);
    get(&c, &Method::GET).await.unwrap();
    get(&c, &Method::GET).await.unwrap();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "an expired connection is not reused"
    );
}

#[test]
fn authorities_split_into_host_and_port() {
    for (a, host, port) in [
        ("candidate.svc:8080", "candidate.svc", 8080),
        ("candidate.svc", "candidate.svc", 80),
        ("10.0.0.7:9000", "10.0.0.7", 9000),
        ("[::1]:9000", "::1", 9000),
        ("[::1]", "::1", 80),
    ] {
        assert_eq!(host_and_port(a, 80), (host.to_string(), port), "{a}");
    }
}

fn client(authority: &str, idle_timeout: Duration) -> ShadowClient {
    ShadowClient::new(
        authority,
        None,
        4,
        idle_timeout,
        Resolver::new(Duration::from_secs(60)),
    )
}

#[tokio::test]
async fn a_burst_of_new_connections_to_a_name_makes_one_lookup() {
    // Every answer closes its connection, so every request connects.
    let (addr, accepted) = server(1, true).await;
    let port = addr.rsplit(':').next().unwrap();
    let resolver = Resolver::new(Duration::from_secs(60));
    let c = ShadowClient::new(
        &format!("localhost:{port}"),
        None,
        4,
        Duration::from_secs(60),
        resolver.clone(),
    );
    let all = futures_util::future::join_all((0..10).map(|_| get(&c, &Method::GET))).await;
    assert!(all.iter().all(|r| r.is_ok()), "{all:?}");
    assert_eq!(
        (accepted.load(Ordering::SeqCst), resolver.lookups()),
        (10, 1)
    );
}

/// An answer whose body never ends: `head`, then `unit` repeated forever; counts what was read.
struct Endless {
    head: Vec<u8>,
    unit: Vec<u8>,
    read: usize,
}

impl AsyncRead for Endless {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let at = self.read;
        let byte = |i: usize| {
            if i < self.head.len() {
                self.head[i]
            } else {
                self.unit[(i - self.head.len()) % self.unit.len()]
            }
        };
        let n = buf.remaining();
        let bytes: Vec<u8> = (at..at + n).map(byte).collect();
        buf.put_slice(&bytes);
        self.read += n;
        Poll::Ready(Ok(()))
    }
}

#[test]
fn endless_answers_stop_at_the_cap_with_what_they_allocated_counted() {
    let chunk = {
        let mut c = b"1000\r\n".to_vec();
        c.extend_from_slice(&[b'x'; 0x1000]);
        c.extend_from_slice(b"\r\n");
        c
    };
    let cases: [(&[u8], Vec<u8>); 2] = [
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            chunk,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", b"y".to_vec()),
    ];
    let cap = 1 << 20;
    for (head, unit) in cases {
        let budget = Budget::new(64 << 20);
        let mut io = Endless {
            head: head.to_vec(),
            unit,
            read: 0,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut held = budget.reservation();
        let r = rt.block_on(read_answer(&mut io, false, cap, &mut held));
        assert!(
            matches!(r, Err(Failure { error: ShadowError::TooLarge(c), .. }) if c == cap),
            "{head:?}"
        );
        // Reading stopped at once: past the cap by at most one read.
        assert!(
            io.read <= cap + head.len() + CHUNKED_READ + 8192,
            "{}",
            io.read
        );
        // Every allocation was counted, and never more than the cap, one segment and the
        // read buffer; all of it came back.
        let peak = budget.peak();
        assert!(peak >= cap, "{peak}");
        assert!(
            peak <= cap + crate::ingest::buffer::SEGMENT + CHUNKED_READ + MAX_CHUNK_LINE,
            "{peak}"
        );
        assert_eq!(budget.used(), 0);
    }
}

#[test]
fn a_declared_length_over_the_cap_is_refused_unread() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 209715200\r\n\r\n";
    let budget = Budget::new(64 << 20);
    let mut io = Endless {
        head: head.to_vec(),
        unit: b"z".to_vec(),
        read: 0,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut held = budget.reservation();
    let r = rt.block_on(read_answer(&mut io, false, 4 << 20, &mut held));
    assert!(matches!(
        r,
        Err(Failure {
            error: ShadowError::TooLarge(_),
            ..
        })
    ));
    // The first read only: the head and what came with it.
    assert_eq!(io.read, FIRST_READ);
    assert_eq!(budget.peak(), FIRST_READ);
}
