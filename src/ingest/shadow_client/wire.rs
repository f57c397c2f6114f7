//! The answer side of the shadow client's wire protocol (RFC 9112): the head, the body's
//! framing, and reading a body by content-length, chunked coding or until close, each under the
//! caller's size cap and the memory budget.

use super::{
    Answer, CHUNKED_READ, EXACT_BODY, FIRST_READ, Failure, MAX_CHUNK_LINE, MAX_HEAD, MAX_HEADERS,
    MAX_TRAILERS, MIN_READ, ShadowError,
};
use crate::ingest::buffer::{Buffer, Collector};
use crate::pipeline::budget::Reservation;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How an answer's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) framing: Framing,
    /// The connection may carry another request after this answer.
    pub(super) keep_alive: bool,
}

/// Parses an answer head from the start of `buf`: `None` until it is complete.
pub(super) fn parse_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(Head, usize)>, ShadowError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ShadowError::invalid(e)),
    };
    let status = resp.code.unwrap_or(0);
    let mut keep_alive = resp.version == Some(1);
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    let mut length: Option<u64> = None;
    let mut coded: Option<bool> = None; // transfer-encoding present: is chunked the last coding?
    for f in resp.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| ShadowError::invalid(format!("header name {:?}", f.name)))?;
        let value = HeaderValue::from_bytes(f.value)
            .map_err(|_| ShadowError::invalid(format!("value of header {name}")))?;
        let text = std::str::from_utf8(f.value).unwrap_or("");
        if name == header::CONTENT_LENGTH {
            // `content-length: 5, 5` is one length said twice; different lengths are an error.
            for v in text.split(',') {
                let n: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| ShadowError::invalid(format!("content-length {text:?}")))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ShadowError::invalid("conflicting content-length"));
                }
                length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            let last = text.rsplit(',').map(str::trim).find(|t| !t.is_empty());
            coded = Some(last.is_some_and(|t| t.eq_ignore_ascii_case("chunked")));
        } else if name == header::CONNECTION {
            for t in text.split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case("keep-alive") && resp.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
        headers.append(name, value);
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else if let Some(chunked) = coded {
        // Both framings at once is how smuggling starts: use transfer-encoding, then close.
        if length.is_some() {
            keep_alive = false;
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Some((
        Head {
            status,
            headers,
            framing,
            keep_alive,
        },
        len,
    )))
}

/// Reads more of the answer into `buf`, first making room for `room` bytes if it has less (a
/// block of at most `ceiling` bytes unless what it holds needs more; reserved in the budget
/// before it is allocated). Returns the bytes read.
pub(super) async fn fill<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Buffer,
    room: usize,
    ceiling: usize,
) -> Result<usize, ShadowError> {
    if buf.spare() < room && !buf.make_room(room, ceiling) {
        return Err(ShadowError::OverBudget);
    }
    // `read_buf` fills spare capacity only (there is some): it never grows the buffer.
    io.read_buf(buf.bytes_mut()).await.map_err(ShadowError::io)
}

/// Reads at most `max` (≥ 1) more body bytes into `body`; returns how many (0: the upstream
/// closed).
async fn fill_body<R: AsyncRead + Unpin>(
    io: &mut R,
    body: &mut Collector,
    max: usize,
) -> Result<usize, ShadowError> {
    let (segment, room) = body.room().ok_or(ShadowError::OverBudget)?;
    // Limited to the segment's room: the segment never grows, and never takes more than `max`.
    let mut limited = segment.limit(room.min(max));
    io.read_buf(&mut limited).await.map_err(ShadowError::io)
}

/// Reads one whole answer (skipping interim 1xx ones); also whether the connection may be
/// used again. The body's block stays reserved in `held`; read buffers are reserved in the
/// same budget while they live.
pub(super) async fn read_answer<R: AsyncRead + Unpin>(
    io: &mut R,
    head_request: bool,
    cap: usize,
    held: &mut Reservation,
) -> Result<(Answer, bool), Failure> {
    let mut buf = Buffer::new(held.sibling());
    let head = loop {
        match parse_head(buf.as_bytes(), head_request)? {
            Some((h, n)) if (100..200).contains(&h.status) => {
                if h.status == 101 {
                    let e = ShadowError::invalid("unexpected 101 Switching Protocols");
                    return Err(e.into());
                }
                buf.bytes_mut().advance(n);
            }
            Some((h, n)) => {
                buf.bytes_mut().advance(n);
                break h;
            }
            None if buf.len() >= MAX_HEAD => {
                return Err(ShadowError::invalid(format!("head over {MAX_HEAD} bytes")).into());
            }
            None => {
                let first = buf.is_empty();
                let room = if first { FIRST_READ } else { MIN_READ };
                if fill(io, &mut buf, room, MAX_HEAD + FIRST_READ)
                    .await
                    .map_err(|error| Failure {
                        answered: !first,
                        error,
                    })?
                    == 0
                {
                    return Err(Failure {
                        error: ShadowError::closed(),
                        answered: !first,
                    });
                }
            }
        }
    };
    let (body, clean) = match head.framing {
        Framing::Empty => (Collector::default(), buf.is_empty()),
        Framing::Length(n) => read_length(io, buf, n, cap).await?,
        Framing::Chunked => read_chunked(io, buf, cap).await?,
        Framing::UntilClose => (read_to_close(io, buf, cap).await?, false),
    };
    let (body, body_held) = body.freeze().ok_or(ShadowError::OverBudget)?;
    held.absorb(body_held);
    Ok((
        Answer {
            status: head.status,
            headers: head.headers,
            body,
        },
        head.keep_alive && clean,
    ))
}

/// A `content-length` body. One over the cap is refused on its declaration, unread. A short
/// one is one block of exactly its size from the start; a longer one is collected as it
/// arrives, so that a slow sender holds about what it has sent, not what it promised. The second
/// value says the upstream sent nothing beyond it.
pub(super) async fn read_length<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: Buffer,
    n: u64,
    cap: usize,
) -> Result<(Collector, bool), ShadowError> {
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= cap)
        .ok_or(ShadowError::TooLarge(cap))?;
    let mut body = if n <= EXACT_BODY {
        Collector::exact(buf.sibling_reservation(), n).ok_or(ShadowError::OverBudget)?
    } else {
        buf.collector()
    };
    let have = buf.len().min(n);
    if !body.extend(&buf.as_bytes()[..have]) {
        return Err(ShadowError::OverBudget);
    }
    let clean = buf.len() <= n;
    // The head's buffer is let go before the rest arrives.
    drop(buf);
    while body.len() < n {
        let rest = n - body.len();
        if fill_body(io, &mut body, rest).await? == 0 {
            return Err(ShadowError::closed());
        }
    }
    Ok((body, clean))
}

pub(super) async fn read_chunked<R: AsyncRead + Unpin>(
    io: &mut R,
    mut buf: Buffer,
    cap: usize,
) -> Result<(Collector, bool), ShadowError> {
    let mut decoder = Chunked::default();
    let mut body = buf.collector();
    let mut room = MIN_READ;
    loop {
        let done = decoder.decode(buf.bytes_mut(), |data| {
            if body.len().saturating_add(data.len()) > cap {
                return Err(ShadowError::TooLarge(cap));
            }
            if !body.extend(data) {
                return Err(ShadowError::OverBudget);
            }
            Ok(())
        })?;
        if done {
            return Ok((body, buf.is_empty()));
        }
        // A read that filled the buffer says more is waiting: a larger block (up to
        // CHUNKED_READ) makes fewer reads of a long body; a short answer never grows it.
        room = if buf.spare() == 0 {
            (room * 2).min(CHUNKED_READ)
        } else {
            MIN_READ
        };
        if fill(
            io,
            &mut buf,
            room,
            CHUNKED_READ.max(MAX_CHUNK_LINE + MIN_READ),
        )
        .await?
            == 0
        {
            return Err(ShadowError::closed());
        }
    }
}

/// A body delimited by the end of the connection, collected as it arrives; one byte more than
/// the cap is over it.
pub(super) async fn read_to_close<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: Buffer,
    cap: usize,
) -> Result<Collector, ShadowError> {
    let mut body = buf.collector();
    if buf.len() > cap || !body.extend(buf.as_bytes()) {
        return Err(if buf.len() > cap {
            ShadowError::TooLarge(cap)
        } else {
            ShadowError::OverBudget
        });
    }
    drop(buf);
    loop {
        // At the cap, one more byte says whether the body is over it.
        let most = (cap - body.len()).max(1);
        let n = fill_body(io, &mut body, most).await?;
        if n == 0 {
            return Ok(body);
        }
        if body.len() > cap {
            return Err(ShadowError::TooLarge(cap));
        }
    }
}

/// Decoder of the chunked transfer coding (RFC 9112 §7.1), fed whatever has arrived.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    pub(super) state: ChunkState,
    pub(super) trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    /// Consumes what it can of `buf`, passing chunk data to `data`; true once the last chunk
    /// and the trailers are read (what follows them stays in `buf`).
    pub(super) fn decode(
        &mut self,
        buf: &mut BytesMut,
        mut data: impl FnMut(&[u8]) -> Result<(), ShadowError>,
    ) -> Result<bool, ShadowError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE, "chunk-size line")? else {
                        return Ok(false);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    data(&buf[..take])?;
                    buf.advance(take);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    let Some(line) = take_line(buf, 2, "chunk end")? else {
                        return Ok(false);
                    };
                    if !line.is_empty() {
                        return Err(ShadowError::invalid("chunk longer than its size"));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE, "trailer line")? else {
                        return Ok(false);
                    };
                    self.trailer_bytes += line.len();
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(ShadowError::invalid(format!(
                            "trailers over {MAX_TRAILERS} bytes"
                        )));
                    }
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }
}

/// The next line of `buf` without its CRLF (or bare LF), consumed; `None` until it is whole.
pub(super) fn take_line(
    buf: &mut BytesMut,
    max: usize,
    what: &str,
) -> Result<Option<Bytes>, ShadowError> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            if line.len() > max {
                return Err(ShadowError::invalid(format!("{what} over {max} bytes")));
            }
            Ok(Some(line.freeze()))
        }
        None if buf.len() > max + 1 => {
            Err(ShadowError::invalid(format!("{what} over {max} bytes")))
        }
        None => Ok(None),
    }
}

/// The size of a chunk-size line (`1a;ext=value`).
pub(super) fn chunk_size(line: &[u8]) -> Result<u64, ShadowError> {
    let digits = line
        .iter()
        .position(|b| *b == b';' || *b == b' ' || *b == b'\t')
        .map_or(line, |i| &line[..i]);
    let bad = || ShadowError::invalid(format!("chunk size {:?}", String::from_utf8_lossy(line)));
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(digits).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}
