//! The property behind the `wire` fuzz target (`fuzz/fuzz_targets/wire.rs`) and its corpus
//! replay (`tests/fuzz_corpus.rs`, which compiles this very file): the shadow client's answer
//! reader (`shadow_client::fuzzing::read_answer`: head, interim answers, content-length, chunked
//! and close-delimited bodies) fed a byte stream in arbitrary reads, with pending reads and an
//! injected reset, exactly as it consumes a socket.
//!
//! Whatever the bytes:
//! - no panic, and the read ends: every read delivers bytes, or is the one end-of-stream read,
//!   or fails; a read is never asked for with no room to read into; the reader is polled again
//!   only after a pending read;
//! - a body kept is at most the cap; the reservation holds at least what is kept, the budget
//!   never goes over its limit, and everything comes back when the reservation is dropped.
//!
//! For an answer encoded from generated parts (interim 1xx answers, HTTP/1.0 or 1.1, status,
//! headers, `connection` tokens, content-length, chunked with extensions, upper-case hex, leading
//! zeros and trailers, both framings at once, close-delimited, bare-LF lines, a HEAD request,
//! bytes of a next answer behind it), with no budget to run out of and no injected reset:
//! - the body that fits the cap is the payload, byte for byte (round trip), with its status;
//! - a body over the cap fails `TooLarge`, with no read begun past the one that crossed the cap;
//! - the connection is reusable exactly when the version, `connection` and framing allow it and
//!   nothing of the next answer was read; it is never reusable after reading into the next one.

mod answer;

use answer::{Built, BuiltFraming, Connection, Encoded, Interim, Status};
use arbitrary::{Arbitrary, Unstructured};
use shadowdiff::ingest::shadow_client::ShadowError;
use shadowdiff::ingest::shadow_client::fuzzing::read_answer;
use shadowdiff::pipeline::budget::Budget;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// What one input exercised (so the replay can tell the property was not vacuous).
#[derive(Debug, Default, Clone, Copy)]
pub struct Exercised {
    /// Generated answers read back whole and equal to their payload.
    pub round_trips: usize,
    /// ... of which chunked.
    pub chunked: usize,
    /// Generated answers over the cap, refused as `TooLarge`.
    pub too_large: usize,
    /// Answers kept whatever the framing (raw inputs included).
    pub answers: usize,
    /// Inputs refused with an error.
    pub errors: usize,
}

impl Exercised {
    pub fn add(&mut self, o: Exercised) {
        self.round_trips += o.round_trips;
        self.chunked += o.chunked;
        self.too_large += o.too_large;
        self.answers += o.answers;
        self.errors += o.errors;
    }
}

/// Runs the properties over one fuzz input; `Err` names the broken property.
pub fn check(data: &[u8]) -> Result<Exercised, String> {
    let mut u = Unstructured::new(data);
    let delivery = Delivery::arbitrary(&mut u).unwrap_or_default();
    let limits = Limits::arbitrary(&mut u).unwrap_or_default();
    match u.int_in_range(0u8..=3).unwrap_or(0) {
        0 => {
            let head_request = u.arbitrary().unwrap_or(false);
            let stream = u.take_rest().to_vec();
            let cap = limits.cap(None);
            run(&stream, head_request, &delivery, cap, limits.budget, None)
        }
        1 => {
            let (head, head_request) = fixed_head(&mut u);
            let mut stream = head.into_bytes();
            stream.extend_from_slice(u.take_rest());
            let cap = limits.cap(None);
            run(&stream, head_request, &delivery, cap, limits.budget, None)
        }
        _ => {
            let built = Built::arbitrary(&mut u).map_err(|e| e.to_string());
            let Ok(built) = built else {
                return Ok(Exercised::default());
            };
            let enc = built.encode();
            let cap = limits.cap(Some(enc.body.len()));
            let head_request = built.head_request;
            run(
                &enc.bytes,
                head_request,
                &delivery,
                cap,
                limits.budget,
                Some(&enc),
            )
        }
    }
}

/// Checks the properties over a byte stream read in `cuts` (seeds from outside the project).
pub fn check_stream(stream: &[u8], head_request: bool, cuts: &[u16]) -> Result<Exercised, String> {
    let delivery = Delivery {
        cuts: cuts.to_vec(),
        ..Delivery::default()
    };
    run(
        stream,
        head_request,
        &delivery,
        usize::from(u16::MAX),
        None,
        None,
    )
}

/// Checks a generated answer carrying `payload` as content-length, chunked (in `chunk`-byte
/// chunks) and close-delimited, each read in `cuts`, with a cap over the payload.
pub fn check_payload(payload: &[u8], chunk: usize, cuts: &[u16]) -> Result<Exercised, String> {
    let mut total = Exercised::default();
    for framing in [
        BuiltFraming::Length { repeat: false },
        BuiltFraming::Chunked {
            chunks: vec![chunk.clamp(1, u16::MAX as usize) as u16; payload.len() / chunk.max(1)],
            upper: false,
            zeros: 0,
            extension: chunk.is_multiple_of(2),
            trailers: vec![b"x-trailer: 1".to_vec()],
            with_length: false,
        },
        BuiltFraming::Close,
    ] {
        let built = Built {
            framing,
            payload: payload.to_vec(),
            ..Built::default()
        };
        let delivery = Delivery {
            cuts: cuts.to_vec(),
            ..Delivery::default()
        };
        let enc = built.encode();
        total.add(run(
            &enc.bytes,
            false,
            &delivery,
            payload.len(),
            None,
            Some(&enc),
        )?);
    }
    Ok(total)
}

/// Every combination of framing, version, `connection` token, bodiless status, HEAD request,
/// next answer behind, read size and a cap at or just under the payload: the round-trip
/// expectations, each time.
pub fn check_matrix(payload: &[u8]) -> Result<Exercised, String> {
    let framing = |i: usize| match i {
        0 | 1 => BuiltFraming::Length { repeat: i == 1 },
        2 | 3 => BuiltFraming::Chunked {
            chunks: vec![2, 0, 5],
            upper: i == 3,
            zeros: 2,
            extension: i == 3,
            trailers: vec![b"ab".to_vec()],
            with_length: i == 3,
        },
        _ => BuiltFraming::Close,
    };
    let connections = [
        None,
        Some(Connection::Close),
        Some(Connection::KeepAlive),
        Some(Connection::CloseAmongOthers),
        Some(Connection::KeepAliveMixedCase),
        Some(Connection::Other),
    ];
    let statuses = [Status::Ok, Status::NoContent, Status::NotModified];
    let mut total = Exercised::default();
    // One index, read in mixed radix: framing (5), connection (6), status (3), then one bit each
    // for HTTP/1.0, HEAD, a next answer, reads of 1 and 3 bytes, and the cap one under.
    for n in 0..5 * 6 * 3 * 32 {
        let (f, c, st, bits) = (n % 5, n / 5 % 6, n / 30 % 3, n / 90);
        let bit = |k: usize| bits & (1 << k) != 0;
        let built = Built {
            interim: vec![Interim::Continue],
            http10: bit(0),
            status: statuses[st],
            connection: connections[c],
            framing: framing(f),
            head_request: bit(1),
            payload: payload.to_vec(),
            next: if bit(2) {
                b"HTTP/1.1 200 OK\r\n".to_vec()
            } else {
                Vec::new()
            },
            ..Built::default()
        };
        let delivery = Delivery {
            cuts: if bit(3) { vec![0, 3] } else { Vec::new() },
            ..Delivery::default()
        };
        let cap = payload.len() - usize::from(bit(4));
        let enc = built.encode();
        let seen = run(
            &enc.bytes,
            built.head_request,
            &delivery,
            cap,
            None,
            Some(&enc),
        )
        .map_err(|e| format!("{e}: cap {cap}, {built:?}"))?;
        total.add(seen);
    }
    Ok(total)
}

/// How the stream reaches the reader.
#[derive(Debug, Default, Arbitrary)]
struct Delivery {
    /// Sizes of successive reads (0 is one byte); after the last, as much as fits.
    cuts: Vec<u16>,
    /// Bit `k % 8` set: the `k`th read is pending once first.
    pending: u8,
    /// A reset instead of the read that would deliver the byte at this offset.
    reset_at: Option<u16>,
}

#[derive(Debug, Default, Arbitrary)]
struct Limits {
    cap: u16,
    /// Under the cap by 0, 1 or 2 bytes, or over it (the common case), for generated answers.
    cap_mode: u8,
    budget: Option<u16>,
}

impl Limits {
    fn cap(&self, payload: Option<usize>) -> usize {
        match (payload, self.cap_mode % 8) {
            (Some(n), 0) => n.saturating_sub(1),
            (Some(n), 1) => n,
            (Some(n), 2) => usize::from(self.cap) % (n + 1),
            (Some(_), 3) => 1 << 20,
            _ => usize::from(self.cap),
        }
    }
}

/// A fixed head, so the raw rest of the input reaches one body reader directly.
fn fixed_head(u: &mut Unstructured<'_>) -> (String, bool) {
    let n: u16 = u.arbitrary().unwrap_or(0);
    let head = match u.int_in_range(0u8..=4).unwrap_or(0) {
        0 => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
        1 => format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n"),
        2 => "HTTP/1.1 200 OK\r\n\r\n".to_string(),
        3 => {
            format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\ntransfer-encoding: chunked\r\n\r\n")
        }
        _ => "HTTP/1.1 100 Continue\r\n\r\n".to_string(),
    };
    (head, n.is_multiple_of(7))
}

/// A socket that hands out `data` as `Delivery` says, and records how it was read.
struct Script<'a> {
    data: &'a [u8],
    pos: usize,
    delivery: &'a Delivery,
    reads: usize,
    pended: bool,
    eof_reads: usize,
    reset: bool,
    /// Where each read began.
    starts: Vec<usize>,
    fault: Option<String>,
}

impl AsyncRead for Script<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.reset || this.eof_reads > 0 {
            this.fault = Some("read again after the stream ended".into());
            return Poll::Ready(Ok(()));
        }
        let k = this.reads;
        if !this.pended && this.delivery.pending & (1 << (k % 8)) != 0 {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pended = false;
        this.reads += 1;
        let left = this.data.len() - this.pos;
        if left == 0 {
            this.eof_reads += 1;
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            // A socket would answer 0, which the reader would take for the end of the stream.
            this.fault = Some(format!("read with no room at offset {}", this.pos));
            return Poll::Ready(Ok(()));
        }
        let want = this
            .delivery
            .cuts
            .get(k)
            .map_or(usize::MAX, |c| usize::from(*c).max(1));
        let mut n = want.min(left).min(buf.remaining());
        if let Some(r) = this.delivery.reset_at.map(usize::from)
            && r < this.pos + n
        {
            if r <= this.pos {
                this.reset = true;
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            n = r - this.pos;
        }
        this.starts.push(this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Polls `fut` to completion with a no-op waker: the script is never pending twice in a row,
/// so more polls than reads means the reader spun.
fn drive<T>(fut: impl Future<Output = T>, max_polls: usize) -> Option<T> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..max_polls {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

fn run(
    stream: &[u8],
    head_request: bool,
    delivery: &Delivery,
    cap: usize,
    budget: Option<u16>,
    expect: Option<&Encoded>,
) -> Result<Exercised, String> {
    let limit = budget.map_or(usize::MAX, usize::from);
    let budget_set = budget.is_some();
    let budget = Budget::new(limit);
    let mut held = budget.reservation();
    let mut script = Script {
        data: stream,
        pos: 0,
        delivery,
        reads: 0,
        pended: false,
        eof_reads: 0,
        reset: false,
        starts: Vec::new(),
        fault: None,
    };
    // One poll per read, one more per pending read, and the last.
    let max_polls = 2 * (stream.len() + 2);
    let out = drive(
        read_answer(&mut script, head_request, cap, &mut held),
        max_polls,
    )
    .ok_or_else(|| format!("no answer after {max_polls} polls: the reader spins"))?;
    if let Some(f) = script.fault {
        return Err(f);
    }
    let mut seen = Exercised::default();
    match &out {
        Ok((answer, _)) => {
            seen.answers += 1;
            if answer.body.len() > cap {
                return Err(format!(
                    "kept {} bytes over a cap of {cap}",
                    answer.body.len()
                ));
            }
            if held.bytes() < answer.body.len() {
                return Err(format!(
                    "kept {} bytes with {} reserved",
                    answer.body.len(),
                    held.bytes()
                ));
            }
        }
        Err(_) => seen.errors += 1,
    }
    if budget.used() > budget.limit() {
        return Err(format!(
            "budget at {} over {}",
            budget.used(),
            budget.limit()
        ));
    }
    drop(held);
    if budget.used() != 0 {
        return Err(format!(
            "{} bytes never returned to the budget",
            budget.used()
        ));
    }
    let Some(e) = expect else {
        return Ok(seen);
    };
    let tag = || {
        format!(
            "(status {}, cap {cap}, {} body bytes)",
            e.status,
            e.body.len()
        )
    };
    if let (Ok((_, reusable)), true) = (&out, script.pos > e.end)
        && *reusable
    {
        return Err(format!(
            "reusable after reading {} bytes of the next answer {}",
            script.pos - e.end,
            tag()
        ));
    }
    // Exact expectations only when nothing else could have stopped the read.
    if script.reset || budget_set {
        if let Ok((answer, _)) = &out
            && answer.body != e.body
        {
            return Err(format!("body differs from the payload {}", tag()));
        }
        return Ok(seen);
    }
    if e.body.len() > cap {
        if !matches!(out, Err(ShadowError::TooLarge(c)) if c == cap) {
            return Err(format!("over the cap but {:?} {}", out.map(|a| a.1), tag()));
        }
        let crossing = e.offsets[cap];
        if let Some(s) = script.starts.iter().find(|s| **s > crossing) {
            return Err(format!(
                "read from {s} after the cap was crossed at {crossing} {}",
                tag()
            ));
        }
        seen.too_large += 1;
        return Ok(seen);
    }
    match out {
        Ok((answer, reusable)) => {
            if answer.status != e.status || answer.body != e.body {
                return Err(format!(
                    "read back status {} and {} body bytes {}",
                    answer.status,
                    answer.body.len(),
                    tag()
                ));
            }
            for (name, value) in &e.headers {
                if !answer.headers.get_all(*name).iter().any(|v| v == value) {
                    return Err(format!("header {name}: {value:?} lost {}", tag()));
                }
            }
            let clean = script.pos == e.end;
            if stream.len() == e.end && reusable != e.reusable {
                return Err(format!(
                    "reusable {reusable}, expected {} {}",
                    e.reusable,
                    tag()
                ));
            }
            if reusable && !(e.reusable && clean) {
                return Err(format!("reusable when it must not be {}", tag()));
            }
            seen.round_trips += 1;
            seen.chunked += usize::from(e.chunked);
            Ok(seen)
        }
        Err(err) => Err(format!("valid answer refused: {err} {}", tag())),
    }
}
