//! One TCP connection to the server port: both directions reassembled, requests and responses
//! read, and paired in order.
//!
//! Pairing is first-in first-out, checked against TCP's own evidence: a request's ACK field
//! says how much of the server's stream the client had received when it sent it, so a response
//! that starts *before* that point cannot answer it (the server answered more than it was
//! asked, or the capture began mid-connection) and is counted `no_request` instead of shifting
//! every later pair. After a gap in the responses, the same evidence tells which requests lost
//! their answer; where it cannot tell (pipelined requests), the candidates are all counted
//! `gap` rather than risk a wrong pair.

use super::counts::{Incomplete, Outcome};
use super::http::{Message, Read, Reader};
use super::tcp::{Segment, Stream};
use super::{CaptureTimes, CapturedExchange, CapturedRequest, CapturedResponse, Finished};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// A request waiting for its response, or the placeholder of one that was lost.
#[derive(Debug)]
struct Waiting {
    msg: Option<Box<Message>>,
    /// Set when the request itself is already known to be incomplete or unparsable.
    fate: Option<Outcome>,
    ack: Option<u32>,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub c2s: Stream,
    pub s2c: Stream,
    req: Reader,
    resp: Reader,
    queue: VecDeque<Waiting>,
    /// Responses lost in a gap may precede the next response read.
    resp_gap: bool,
    paired: u64,
    pub last_ts_us: i64,
}

impl Conn {
    pub fn new(id: u64, client: SocketAddr, server: SocketAddr, max_body: usize) -> Self {
        Self {
            id,
            client,
            server,
            c2s: Stream::default(),
            s2c: Stream::default(),
            req: Reader::requests(max_body),
            resp: Reader::responses(max_body),
            queue: VecDeque::new(),
            resp_gap: false,
            paired: 0,
            last_ts_us: 0,
        }
    }

    /// Feeds a segment and reads what became readable.
    pub fn push(
        &mut self,
        from_client: bool,
        seg: &Segment<'_>,
        max_stream: usize,
        reorder_us: i64,
        out: &mut Vec<Finished>,
    ) {
        self.last_ts_us = self.last_ts_us.max(seg.ts_us);
        let s = if from_client {
            &mut self.c2s
        } else {
            &mut self.s2c
        };
        s.push(seg, max_stream);
        self.c2s.expire_holes(self.last_ts_us, reorder_us);
        self.s2c.expire_holes(self.last_ts_us, reorder_us);
        self.pump(false, out);
    }

    /// Both directions are over (FIN both ways, or a RST).
    pub fn closed(&self) -> bool {
        (self.c2s.finished() && self.s2c.finished()) || self.c2s.reset() || self.s2c.reset()
    }

    /// Bytes held for this connection: stream buffers and bodies waiting to be paired.
    pub fn memory(&self) -> usize {
        let queued: usize = self
            .queue
            .iter()
            .filter_map(|w| w.msg.as_ref())
            .map(|m| m.body.len() + 256)
            .sum();
        self.c2s.buffered() + self.s2c.buffered() + queued
    }

    /// Ends the connection: holes become gaps, everything readable is read, and what is left
    /// waiting is counted with `why` (or `cut` when a message was half read).
    pub fn finish(&mut self, why: Incomplete, out: &mut Vec<Finished>) {
        self.c2s.close();
        self.s2c.close();
        self.pump(true, out);
        if self.req.in_message() {
            self.emit(Outcome::Incomplete(Incomplete::Cut), None, out);
        }
        let cut = self.resp.in_message();
        let mut first = true;
        while let Some(w) = self.queue.pop_front() {
            let o = w.fate.unwrap_or(Outcome::Incomplete(if first && cut {
                Incomplete::Cut
            } else {
                why
            }));
            first = false;
            self.emit(o, w.msg.as_deref(), out);
        }
        if cut && first {
            self.emit(Outcome::Incomplete(Incomplete::NoRequest), None, out);
        }
    }

    fn pump(&mut self, closing: bool, out: &mut Vec<Finished>) {
        self.read_requests(closing);
        self.read_responses(closing, out);
    }

    fn read_requests(&mut self, closing: bool) {
        loop {
            let closed = closing || self.c2s.finished();
            match self.req.read(&mut self.c2s, false, false, closed) {
                Read::Message(m) => {
                    let fate = m
                        .body_truncated
                        .then_some(Outcome::Incomplete(Incomplete::BodyTooLarge));
                    self.queue.push_back(Waiting {
                        ack: m.ack,
                        msg: Some(m),
                        fate,
                    });
                }
                Read::Gap { partial } => {
                    if let Some(p) = partial {
                        // Its response will still come: keep its place in the queue.
                        self.queue.push_back(Waiting {
                            ack: p.ack,
                            msg: Some(p),
                            fate: Some(Outcome::Incomplete(Incomplete::Gap)),
                        });
                    }
                }
                Read::Error(_) => self.queue.push_back(Waiting {
                    msg: None,
                    fate: Some(Outcome::Unparsable),
                    ack: None,
                }),
                Read::NeedMore | Read::Interim(_) | Read::Upgraded => return,
            }
        }
    }

    fn read_responses(&mut self, closing: bool, out: &mut Vec<Finished>) {
        loop {
            // A response is read only when the request it answers is known (HEAD and CONNECT
            // change its framing), or at the end, when no request will come any more.
            let front = self.queue.front().and_then(|w| w.msg.as_ref());
            if self.queue.is_empty() && !closing && !self.resp.in_message() {
                return;
            }
            let method = front.map(|m| m.head.method.as_str()).unwrap_or("");
            let (head, connect) = (method == "HEAD", method == "CONNECT");
            let closed = closing || self.s2c.finished();
            match self.resp.read(&mut self.s2c, head, connect, closed) {
                Read::NeedMore | Read::Upgraded => return,
                Read::Interim(_) => {}
                Read::Gap { partial } => {
                    if partial.is_some() {
                        self.answer(Outcome::Incomplete(Incomplete::Gap), None, out);
                    }
                    self.resp_gap = true;
                }
                Read::Error(_) => self.answer(Outcome::Unparsable, None, out),
                Read::Message(m) => self.pair(m, out),
            }
        }
    }

    /// Pairs a complete response with the request it answers.
    fn pair(&mut self, m: Box<Message>, out: &mut Vec<Finished>) {
        let at = m.offset;
        // Has the client already received byte `at` when it sent request `i`?
        let seen_before = |c: &Conn, i: usize| -> bool {
            c.queue
                .get(i)
                .and_then(|w| w.ack)
                .and_then(|a| c.s2c.offset_of(a))
                .is_some_and(|a| a > at)
        };
        let sent_by = |c: &Conn, i: usize| -> Option<u64> {
            c.queue
                .get(i)
                .and_then(|w| w.ack)
                .and_then(|a| c.s2c.offset_of(a))
        };
        if std::mem::take(&mut self.resp_gap) {
            // Request 0's answer ended before request 1 was sent (its ACK is past request 0's
            // and not past this response): that answer was in the gap.
            while let (Some(a0), Some(a1)) = (sent_by(self, 0), sent_by(self, 1)) {
                if a0 < a1 && a1 <= at {
                    self.answer(Outcome::Incomplete(Incomplete::Gap), None, out);
                } else {
                    break;
                }
            }
            if sent_by(self, 1).is_some_and(|a1| a1 <= at) {
                // Pipelined requests sent before this response: which one it answers is unknown.
                while sent_by(self, 0).is_some_and(|a| a <= at) {
                    self.answer(Outcome::Incomplete(Incomplete::Gap), None, out);
                }
                return;
            }
        }
        if self.queue.is_empty() || seen_before(self, 0) {
            self.emit(Outcome::Incomplete(Incomplete::NoRequest), None, out);
            return;
        }
        let method = self
            .queue
            .front()
            .and_then(|w| w.msg.as_ref())
            .map(|r| r.head.method.as_str());
        if m.head.status == 101
            || (method == Some("CONNECT") && (200..300).contains(&m.head.status))
        {
            // The connection is no longer HTTP: what the client sends next is not a request, and
            // anything read as one after this request was not either.
            self.req.upgrade();
            self.queue.truncate(1);
        }
        let outcome = if m.body_truncated {
            Outcome::Incomplete(Incomplete::BodyTooLarge)
        } else {
            Outcome::Complete
        };
        self.answer(outcome, Some(m), out);
    }

    /// Pops the oldest waiting request and emits its exchange with `response` (or its own fate).
    fn answer(
        &mut self,
        outcome: Outcome,
        response: Option<Box<Message>>,
        out: &mut Vec<Finished>,
    ) {
        let Some(w) = self.queue.pop_front() else {
            self.emit(
                match outcome {
                    Outcome::Complete => Outcome::Incomplete(Incomplete::NoRequest),
                    o => o,
                },
                None,
                out,
            );
            return;
        };
        let outcome = w.fate.unwrap_or(outcome);
        let index = self.paired;
        self.paired += 1;
        match (outcome, w.msg, response) {
            (Outcome::Complete, Some(req), Some(resp)) => out.push(Finished {
                outcome,
                request_line: Some(line(&req)),
                connection: self.id,
                exchange: Some(self.exchange(index, *req, *resp)),
            }),
            (o, req, _) => self.emit(o, req.as_deref(), out),
        }
    }

    fn emit(&self, outcome: Outcome, req: Option<&Message>, out: &mut Vec<Finished>) {
        out.push(Finished {
            outcome,
            exchange: None,
            request_line: req.map(line),
            connection: self.id,
        });
    }

    fn exchange(&self, index: u64, req: Message, resp: Message) -> CapturedExchange {
        let (path, query) = match req.head.target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (req.head.target.clone(), None),
        };
        CapturedExchange {
            connection: self.id,
            index,
            client: self.client,
            server: self.server,
            times: CaptureTimes {
                request_first_us: req.first_ts_us,
                request_last_us: req.last_ts_us,
                response_first_us: resp.first_ts_us,
                response_last_us: resp.last_ts_us,
            },
            request: CapturedRequest {
                method: req.head.method,
                path,
                query,
                version: req.head.version,
                headers: req.head.headers,
                body: req.body,
            },
            response: CapturedResponse {
                status: resp.head.status,
                headers: resp.head.headers,
                body: resp.body,
            },
        }
    }
}

fn line(m: &Message) -> String {
    format!("{} {}", m.head.method, m.head.target)
}
