//! HTTP/1.x messages read incrementally from one reassembled direction (httparse for the heads,
//! a small state machine for the bodies). Pure: it reads a [`Stream`]'s readable bytes and
//! consumes what it has parsed, so memory stays with the stream's bound.
//!
//! Framing follows RFC 9112 §6.3: a response to HEAD, a 1xx, 204 or 304 has no body; chunked
//! (the last transfer coding) wins over Content-Length; a response with neither is read until
//! the connection closes; a request with neither has no body. A 101 (or a 2xx to CONNECT) ends
//! HTTP on the connection.

use super::tcp::Stream;

/// Most header fields in one head; more is unparsable.
const MAX_HEADERS: usize = 128;
/// Longest head; a longer one is unparsable (the proxy's `max_header_bytes` default).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) or trailer line.
const MAX_LINE: usize = 4096;

/// A parsed head: the request line or status line and the header fields in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// Request method; empty for a response.
    pub method: String,
    /// Request target as sent; empty for a response.
    pub target: String,
    /// Response status; 0 for a request.
    pub status: u16,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of a header field (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// A message read from a stream, with where and when it was on the wire.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub head: Head,
    /// Body after transfer decoding (chunked removed, content coding kept), up to the cap.
    pub body: Vec<u8>,
    /// The body was larger than the cap and was cut.
    pub body_truncated: bool,
    /// Stream offset of the first byte.
    pub offset: u64,
    /// Capture time of the first and the last byte, µs since the epoch.
    pub first_ts_us: i64,
    pub last_ts_us: i64,
    /// ACK field of the segment carrying the first byte (what the sender had received).
    pub ack: Option<u32>,
}

/// Why a message could not be read. Data for the counters, not a failure of the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid head")]
    Head,
    #[error("head larger than 64 KiB")]
    HeadTooLarge,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("unsupported transfer coding in a request")]
    TransferCoding,
    #[error("invalid chunked framing")]
    Chunked,
}

/// What one call to [`Reader::read`] produced.
#[derive(Debug)]
pub enum Read {
    /// A complete message (a final one for responses).
    Message(Box<Message>),
    /// A 1xx interim response (100 Continue, 103): not paired.
    Interim(u16),
    /// Not enough bytes yet.
    NeedMore,
    /// Bytes are missing at the read position: the message in progress (`partial`), if any, is
    /// lost.
    Gap { partial: Option<Box<Message>> },
    /// The bytes are not HTTP/1.x.
    Error(ParseError),
    /// HTTP ended on this connection (101 Switching Protocols, CONNECT tunnel).
    Upgraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    /// The empty line after the trailers was read.
    Done,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Head,
    Body(Box<Message>, Framing),
    /// After a gap or an error: skip to the next segment that starts a message.
    Resync,
    Upgraded,
}

/// Reads the messages of one direction.
#[derive(Debug)]
pub struct Reader {
    response: bool,
    max_body: usize,
    state: State,
}

impl Reader {
    pub fn requests(max_body: usize) -> Self {
        Self {
            response: false,
            max_body,
            state: State::Head,
        }
    }

    pub fn responses(max_body: usize) -> Self {
        Self {
            response: true,
            max_body,
            state: State::Head,
        }
    }

    /// A message is partly read.
    pub fn in_message(&self) -> bool {
        matches!(self.state, State::Body(..))
    }

    /// The other direction switched protocols (101, CONNECT): nothing more here is HTTP.
    pub fn upgrade(&mut self) {
        self.state = State::Upgraded;
    }

    /// Waiting for the start of a message after a gap or an error.
    pub fn resyncing(&self) -> bool {
        matches!(self.state, State::Resync)
    }

    /// Reads the next message. `head_request`: the response answers a HEAD request; `connect`:
    /// it answers CONNECT. `closed`: the stream has ended (a read-until-close body completes).
    pub fn read(
        &mut self,
        s: &mut Stream,
        head_request: bool,
        connect: bool,
        closed: bool,
    ) -> Read {
        loop {
            if s.at_gap() {
                s.pass_gap();
                return match std::mem::take(&mut self.state) {
                    State::Upgraded => {
                        self.state = State::Upgraded;
                        Read::NeedMore
                    }
                    State::Body(partial, _) => {
                        self.state = State::Resync;
                        Read::Gap {
                            partial: Some(partial),
                        }
                    }
                    _ => {
                        self.state = State::Resync;
                        Read::Gap { partial: None }
                    }
                };
            }
            match std::mem::take(&mut self.state) {
                State::Upgraded => {
                    let n = s.readable().len();
                    s.consume(n);
                    self.state = State::Upgraded;
                    return Read::NeedMore;
                }
                State::Resync => {
                    if self.resync(s) {
                        self.state = State::Head;
                        continue;
                    }
                    self.state = State::Resync;
                    return Read::NeedMore;
                }
                State::Head => match self.head(s, head_request, connect) {
                    Ok(Some((msg, framing))) => self.state = State::Body(msg, framing),
                    Ok(None) => return Read::NeedMore,
                    Err(r) => return r,
                },
                State::Body(mut msg, framing) => match self.body(s, &mut msg, framing, closed) {
                    Ok(None) => return Read::Message(msg),
                    Ok(Some(f)) => {
                        self.state = State::Body(msg, f);
                        return Read::NeedMore;
                    }
                    Err(e) => {
                        self.state = State::Resync;
                        return Read::Error(e);
                    }
                },
            }
        }
    }

    fn head(
        &mut self,
        s: &mut Stream,
        head_request: bool,
        connect: bool,
    ) -> Result<Option<(Box<Message>, Framing)>, Read> {
        let buf = s.readable();
        if buf.is_empty() {
            return Ok(None);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = Head::default();
        let parsed = if self.response {
            let mut r = httparse::Response::new(&mut fields);
            r.parse(buf).inspect(|_| {
                head.status = r.code.unwrap_or(0);
                head.version = r.version.unwrap_or(1);
                head.headers = own(r.headers);
            })
        } else {
            let mut r = httparse::Request::new(&mut fields);
            r.parse(buf).inspect(|_| {
                head.method = r.method.unwrap_or_default().to_string();
                head.target = r.path.unwrap_or_default().to_string();
                head.version = r.version.unwrap_or(1);
                head.headers = own(r.headers);
            })
        };
        let len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                self.state = State::Resync;
                return Err(Read::Error(ParseError::HeadTooLarge));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => {
                self.state = State::Resync;
                return Err(Read::Error(ParseError::Head));
            }
        };
        let at = s.position();
        let meta = s.meta_at(at);
        let last = s.meta_at(at + len as u64 - 1);
        let offset = s.offset_at(at).unwrap_or(at);
        s.consume(len);
        let msg = Box::new(Message {
            head,
            offset,
            first_ts_us: meta.map_or(0, |m| m.ts_us),
            last_ts_us: last.map_or(0, |m| m.ts_us),
            ack: meta.and_then(|m| m.ack),
            ..Message::default()
        });
        if self.response && (100..200).contains(&msg.head.status) {
            if msg.head.status == 101 {
                self.state = State::Upgraded;
                return Err(Read::Message(msg));
            }
            return Err(Read::Interim(msg.head.status));
        }
        if self.response && connect && (200..300).contains(&msg.head.status) {
            self.state = State::Upgraded;
            return Err(Read::Message(msg));
        }
        match self.framing(&msg.head, head_request) {
            Ok(f) => Ok(Some((msg, f))),
            Err(e) => {
                self.state = State::Resync;
                Err(Read::Error(e))
            }
        }
    }

    fn framing(&self, h: &Head, head_request: bool) -> Result<Framing, ParseError> {
        if self.response && (head_request || h.status == 204 || h.status == 304) {
            return Ok(Framing::Length(0));
        }
        let te: Vec<&[u8]> = h
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .map(|(_, v)| v.as_slice())
            .collect();
        if !te.is_empty() {
            let last = te
                .iter()
                .flat_map(|v| v.split(|&b| b == b','))
                .map(|c| c.trim_ascii())
                .rfind(|c| !c.is_empty());
            let chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            return match (chunked, self.response) {
                (true, _) => Ok(Framing::Chunked(Chunk::Size)),
                (false, true) => Ok(Framing::UntilClose),
                (false, false) => Err(ParseError::TransferCoding),
            };
        }
        let mut length: Option<u64> = None;
        for (n, v) in &h.headers {
            if !n.eq_ignore_ascii_case("content-length") {
                continue;
            }
            for part in v.split(|&b| b == b',') {
                let t = part.trim_ascii();
                if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
                    return Err(ParseError::ContentLength);
                }
                let n: u64 = std::str::from_utf8(t)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or(ParseError::ContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::ContentLength);
                }
                length = Some(n);
            }
        }
        Ok(match (length, self.response) {
            (Some(n), _) => Framing::Length(n),
            (None, false) => Framing::Length(0),
            (None, true) => Framing::UntilClose,
        })
    }

    /// Reads body bytes; `Ok(None)` when the message is complete, `Ok(Some(f))` when it needs
    /// more.
    fn body(
        &self,
        s: &mut Stream,
        msg: &mut Message,
        mut f: Framing,
        closed: bool,
    ) -> Result<Option<Framing>, ParseError> {
        loop {
            match f {
                Framing::Length(0) => return Ok(None),
                Framing::Length(n) => {
                    let take = self.take(s, msg, n);
                    if take == 0 {
                        return Ok(Some(f));
                    }
                    f = Framing::Length(n - take);
                }
                Framing::UntilClose => {
                    self.take(s, msg, u64::MAX);
                    // Bytes after a gap are not this body's end: the gap is seen first.
                    return if closed && s.readable().is_empty() && !s.at_gap() {
                        Ok(None)
                    } else {
                        Ok(Some(f))
                    };
                }
                Framing::Chunked(c) => match self.chunk(s, msg, c)? {
                    Some(Chunk::Done) => return Ok(None),
                    Some(next) => f = Framing::Chunked(next),
                    None => return Ok(Some(f)),
                },
            }
        }
    }

    /// One step of chunked decoding; `None` when more bytes are needed, `Some(Done)` when the
    /// empty line ending the message was read.
    fn chunk(
        &self,
        s: &mut Stream,
        msg: &mut Message,
        c: Chunk,
    ) -> Result<Option<Chunk>, ParseError> {
        match c {
            Chunk::Size => {
                let Some(line) = line(s.readable())? else {
                    return Ok(None);
                };
                let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                let digits = digits.trim_ascii();
                if digits.is_empty()
                    || digits.len() > 16
                    || !digits.iter().all(u8::is_ascii_hexdigit)
                {
                    return Err(ParseError::Chunked);
                }
                let size = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| u64::from_str_radix(d, 16).ok())
                    .ok_or(ParseError::Chunked)?;
                let n = line.len();
                self.mark_last(s, msg, n);
                s.consume(n);
                Ok(Some(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                }))
            }
            Chunk::Data(n) => {
                let take = self.take(s, msg, n);
                Ok(match (take, n - take) {
                    (0, _) => None,
                    (_, 0) => Some(Chunk::DataEnd),
                    (_, rest) => Some(Chunk::Data(rest)),
                })
            }
            Chunk::DataEnd => {
                let Some(l) = line(s.readable())? else {
                    return Ok(None);
                };
                if l.trim_ascii().is_empty() {
                    let n = l.len();
                    self.mark_last(s, msg, n);
                    s.consume(n);
                    Ok(Some(Chunk::Size))
                } else {
                    Err(ParseError::Chunked)
                }
            }
            Chunk::Trailers => {
                let Some(l) = line(s.readable())? else {
                    return Ok(None);
                };
                let (n, end) = (l.len(), l.trim_ascii().is_empty());
                self.mark_last(s, msg, n);
                s.consume(n);
                // Trailer fields are read and dropped; the empty line ends the message.
                Ok(Some(if end { Chunk::Done } else { Chunk::Trailers }))
            }
            Chunk::Done => Ok(Some(Chunk::Done)),
        }
    }

    /// Copies up to `n` readable bytes into the body (up to the cap) and consumes them.
    fn take(&self, s: &mut Stream, msg: &mut Message, n: u64) -> u64 {
        let buf = s.readable();
        let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        if k == 0 {
            return 0;
        }
        let room = self.max_body.saturating_sub(msg.body.len());
        msg.body.extend_from_slice(&buf[..k.min(room)]);
        if k > room {
            msg.body_truncated = true;
        }
        self.mark_last(s, msg, k);
        s.consume(k);
        k as u64
    }

    fn mark_last(&self, s: &Stream, msg: &mut Message, n: usize) {
        if let Some(m) = s.meta_at(s.position() + n as u64 - 1) {
            msg.last_ts_us = m.ts_us;
        }
    }

    /// Skips to the next segment boundary where a message plausibly starts; true when found.
    fn resync(&self, s: &mut Stream) -> bool {
        loop {
            let buf = s.readable();
            if buf.is_empty() {
                return false;
            }
            match plausible_start(buf, self.response) {
                Some(true) => return true,
                None => return false,
                Some(false) => {}
            }
            let at = s.position();
            let skip = match s.next_boundary_after(at) {
                Some(b) => (b - at) as usize,
                None => buf.len(),
            };
            s.consume(skip.min(buf.len()));
            if s.at_gap() {
                return false;
            }
        }
    }
}

/// Whether `buf` starts like a message: `Some(true)` yes, `Some(false)` no, `None` can't tell
/// yet (the first line is incomplete).
fn plausible_start(buf: &[u8], response: bool) -> Option<bool> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Some(false)
        } else {
            None
        };
    };
    let first = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    if response {
        return Some(
            first.len() >= 12
                && (first.starts_with(b"HTTP/1.1 ") || first.starts_with(b"HTTP/1.0 "))
                && first[9..12].iter().all(u8::is_ascii_digit),
        );
    }
    let mut parts = first.split(|&b| b == b' ');
    let (Some(m), Some(t), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(false);
    };
    Some(
        !m.is_empty()
            && m.len() <= 20
            && m.iter()
                .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
            && !t.is_empty()
            && (v == b"HTTP/1.1" || v == b"HTTP/1.0"),
    )
}

/// The next line including its `\n`, if complete.
fn line(buf: &[u8]) -> Result<Option<&[u8]>, ParseError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => Ok(Some(&buf[..=i])),
        None if buf.len() > MAX_LINE => Err(ParseError::Chunked),
        None => Ok(None),
    }
}

fn own(h: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests;
