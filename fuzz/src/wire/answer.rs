//! The `wire` target's generated answers: interim 1xx answers, HTTP/1.0 or 1.1, a status,
//! headers, `connection` tokens, content-length (said once or twice), chunked (sizes, upper-case
//! hex, leading zeros, extensions, trailers, with a content-length as well) or close-delimited,
//! CRLF or bare LF, a HEAD request, bytes of a next answer behind; encoded with what reading
//! them must give ([`Encoded`]).

use arbitrary::{Arbitrary, Unstructured};

/// A generated answer.
#[derive(Debug, Arbitrary)]
pub(super) struct Built {
    /// Interim answers before it: 100, 102, 103 (with a header).
    pub(super) interim: Vec<Interim>,
    pub(super) http10: bool,
    pub(super) status: Status,
    pub(super) reason: Reason,
    pub(super) headers: Vec<(Name, Value)>,
    pub(super) connection: Option<Connection>,
    pub(super) framing: BuiltFraming,
    pub(super) bare_lf: bool,
    pub(super) head_request: bool,
    pub(super) payload: Vec<u8>,
    /// Bytes of a next answer, behind this one on the connection.
    pub(super) next: Vec<u8>,
}

impl Default for Built {
    fn default() -> Self {
        Built {
            interim: Vec::new(),
            http10: false,
            status: Status::Ok,
            reason: Reason::Ok,
            headers: Vec::new(),
            connection: None,
            framing: BuiltFraming::Close,
            bare_lf: false,
            head_request: false,
            payload: Vec::new(),
            next: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub(super) enum Interim {
    Continue,
    Processing,
    EarlyHints,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub(super) enum Status {
    Ok,
    Created,
    NoContent,
    NotModified,
    NotFound,
    ServerError,
    Odd,
}

impl Status {
    fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::Created => 201,
            Status::NoContent => 204,
            Status::NotModified => 304,
            Status::NotFound => 404,
            Status::ServerError => 500,
            Status::Odd => 599,
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub(super) enum Reason {
    Ok,
    Empty,
    Spaced,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub(super) enum Name {
    ContentType,
    XFuzz,
    SetCookie,
    Etag,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::ContentType => "Content-Type",
            Name::XFuzz => "x-fuzz",
            Name::SetCookie => "set-cookie",
            Name::Etag => "ETag",
        }
    }
}

/// A header value: visible ASCII and inner spaces, never empty, no outer whitespace.
#[derive(Debug)]
pub(super) struct Value(String);

impl<'a> Arbitrary<'a> for Value {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let raw: Vec<u8> = u.arbitrary()?;
        let s: String = raw
            .iter()
            .take(40)
            .map(|b| char::from(b' ' + b % 95))
            .collect();
        let s = s.trim();
        Ok(Value(if s.is_empty() { "v".into() } else { s.into() }))
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub(super) enum Connection {
    Close,
    KeepAlive,
    CloseAmongOthers,
    KeepAliveMixedCase,
    Other,
}

impl Connection {
    fn text(self) -> &'static str {
        match self {
            Connection::Close => "close",
            Connection::KeepAlive => "keep-alive",
            Connection::CloseAmongOthers => "upgrade, Close ,x",
            Connection::KeepAliveMixedCase => "Keep-Alive",
            Connection::Other => "te",
        }
    }

    fn closes(self) -> bool {
        matches!(self, Connection::Close | Connection::CloseAmongOthers)
    }

    fn keeps(self) -> bool {
        matches!(self, Connection::KeepAlive | Connection::KeepAliveMixedCase)
    }
}

#[derive(Debug, Arbitrary)]
pub(super) enum BuiltFraming {
    /// `content-length`, said twice when `repeat` (`n, n`).
    Length {
        repeat: bool,
    },
    Chunked {
        /// Chunk sizes (0 is one byte); the payload's rest is the last chunk.
        chunks: Vec<u16>,
        upper: bool,
        /// Leading zeros on each size.
        zeros: u8,
        extension: bool,
        /// Trailer lines (made printable).
        trailers: Vec<Vec<u8>>,
        /// A `content-length` as well (served by the chunked coding, then closed).
        with_length: bool,
    },
    Close,
}

/// An encoded answer and what reading it must give.
pub(super) struct Encoded {
    pub(super) bytes: Vec<u8>,
    /// Where this answer ends (the next one's bytes follow).
    pub(super) end: usize,
    pub(super) status: u16,
    /// The body the reader must keep.
    pub(super) body: Vec<u8>,
    /// Offset in `bytes` of each body byte (to find the read that crosses a cap).
    pub(super) offsets: Vec<usize>,
    pub(super) reusable: bool,
    pub(super) chunked: bool,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Built {
    pub(super) fn encode(&self) -> Encoded {
        let eol = if self.bare_lf { "\n" } else { "\r\n" };
        let mut out = Vec::new();
        for i in self.interim.iter().take(3) {
            let line = match i {
                Interim::Continue => format!("HTTP/1.1 100 Continue{eol}{eol}"),
                Interim::Processing => format!("HTTP/1.1 102 Processing{eol}{eol}"),
                Interim::EarlyHints => {
                    format!("HTTP/1.1 103 Early Hints{eol}link: </a.css>; rel=preload{eol}{eol}")
                }
            };
            out.extend_from_slice(line.as_bytes());
        }
        let status = self.status.code();
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let reason = match self.reason {
            Reason::Ok => " OK",
            Reason::Empty => " ",
            Reason::Spaced => " Some Reason Here",
        };
        out.extend_from_slice(format!("{version} {status}{reason}{eol}").as_bytes());
        let mut headers = Vec::new();
        for (n, v) in self.headers.iter().take(8) {
            out.extend_from_slice(format!("{}: {}{eol}", n.as_str(), v.0).as_bytes());
            headers.push((n.as_str(), v.0.clone()));
        }
        if let Some(c) = self.connection {
            out.extend_from_slice(format!("Connection: {}{eol}", c.text()).as_bytes());
        }
        // A HEAD request's answer and 204/304 carry no body, whatever their framing headers say.
        let empty = self.head_request || matches!(status, 204 | 304);
        let n = self.payload.len();
        match &self.framing {
            BuiltFraming::Length { repeat } => {
                let v = if *repeat {
                    format!("{n}, {n}")
                } else {
                    n.to_string()
                };
                out.extend_from_slice(format!("Content-Length: {v}{eol}").as_bytes());
            }
            BuiltFraming::Chunked { with_length, .. } => {
                if *with_length {
                    out.extend_from_slice(format!("content-length: {n}{eol}").as_bytes());
                }
                out.extend_from_slice(format!("Transfer-Encoding: chunked{eol}").as_bytes());
            }
            BuiltFraming::Close => {}
        }
        out.extend_from_slice(eol.as_bytes());
        let mut offsets = Vec::new();
        let mut chunked = false;
        if !empty {
            match &self.framing {
                BuiltFraming::Length { .. } | BuiltFraming::Close => {
                    offsets.extend(out.len()..out.len() + n);
                    out.extend_from_slice(&self.payload);
                }
                BuiltFraming::Chunked {
                    chunks,
                    upper,
                    zeros,
                    extension,
                    trailers,
                    ..
                } => {
                    chunked = true;
                    let zeros = "0".repeat(usize::from(*zeros % 4));
                    let size_line = |size: usize| {
                        let hex = if *upper {
                            format!("{size:X}")
                        } else {
                            format!("{size:x}")
                        };
                        let ext = if *extension { ";name=\"v a\"" } else { "" };
                        format!("{zeros}{hex}{ext}{eol}")
                    };
                    let mut at = 0;
                    let mut sizes = chunks.iter().map(|c| usize::from(*c).max(1));
                    while at < n {
                        let size = sizes.next().unwrap_or(n - at).min(n - at);
                        out.extend_from_slice(size_line(size).as_bytes());
                        offsets.extend(out.len()..out.len() + size);
                        out.extend_from_slice(&self.payload[at..at + size]);
                        out.extend_from_slice(eol.as_bytes());
                        at += size;
                    }
                    out.extend_from_slice(size_line(0).as_bytes());
                    for t in trailers.iter().take(4) {
                        let line: String = t.iter().map(|b| char::from(b'a' + b % 26)).collect();
                        out.extend_from_slice(format!("x-{line}: t{eol}").as_bytes());
                    }
                    out.extend_from_slice(eol.as_bytes());
                }
            }
        }
        let conn = self.connection;
        let mut reusable = if self.http10 {
            conn.is_some_and(Connection::keeps)
        } else {
            !conn.is_some_and(Connection::closes)
        };
        if !empty {
            match &self.framing {
                BuiltFraming::Close => reusable = false,
                BuiltFraming::Chunked { with_length, .. } => reusable &= !with_length,
                BuiltFraming::Length { .. } => {}
            }
        }
        let end = out.len();
        // A close-delimited body runs to the end: nothing can follow it.
        if empty || !matches!(self.framing, BuiltFraming::Close) {
            out.extend_from_slice(&self.next);
        }
        Encoded {
            bytes: out,
            end,
            status,
            body: if empty {
                Vec::new()
            } else {
                self.payload.clone()
            },
            offsets,
            reusable,
            chunked,
            headers,
        }
    }
}
