//! The comparator: a pure, synchronous function from an [`Exchange`] to a [`Verdict`].
//!
//! Order of work, cheapest first: a candidate failure decides at once; then status, headers and
//! bodies. Bodies are decoded (capped), compared byte for byte, and parsed only when the bytes
//! differ — no rule can make two identical bodies differ, and most shadow exchanges match.
//! A mismatch is data in the verdict, never an `Err`.

pub mod grpc;
mod headers;
mod json;
pub mod noise;
pub mod number;
pub mod pattern;
pub mod rules;
mod scan;
mod text;
mod verdict;

use crate::exchange::{self, DecodeError, Exchange, Request, Response, UpstreamError, decode_body};
use rules::{Effective, RuleSet};
use serde_json::Value;
use std::sync::Arc;

pub use json::excerpt;
use verdict::signature_hash;
pub use verdict::{DiffKind, Difference, SkipReason, Verdict, VerdictKind, signature};

/// Limits the comparator works within.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Largest decoded body compared; larger (a zip bomb, say) → `skipped: body_too_large`.
    pub max_decoded_bytes: usize,
    /// Differences kept per exchange; beyond it the verdict is `truncated`.
    pub max_differences: usize,
    /// The gRPC descriptor set (`grpc.descriptors`): gRPC messages by field name.
    pub grpc: Option<Arc<grpc::Schema>>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            max_decoded_bytes: 16 << 20,
            max_differences: 1000,
            grpc: None,
        }
    }
}

/// Header names never compared: hop-by-hop (RFC 9110 §7.6.1) and framing/encoding, since bodies
/// (and gRPC messages) are compared decoded. Volatile headers (Date, Server, ...) are left to `diff-rules/default.yaml`
/// so users can see and change them.
pub const TRANSPORT_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "content-encoding",
    // gRPC's own content coding, per message: messages are compared inflated (`grpc`).
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// Header values never published, whatever the configuration says.
pub const ALWAYS_REDACTED: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

pub const REDACTED: &str = "<redacted>";

/// The pure comparator. Cheap to clone (shares its rules).
#[derive(Debug, Clone)]
pub struct Comparator {
    rules: Arc<RuleSet>,
    opts: CompareOptions,
}

impl Comparator {
    pub fn new(rules: Arc<RuleSet>, opts: CompareOptions) -> Self {
        Self { rules, opts }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Compares one exchange: the candidate against the primary, and with a secondary answer,
    /// marks the differences that primary-vs-secondary noise explains.
    pub fn compare(&self, ex: &Exchange) -> Verdict {
        let secondary = match &ex.secondary {
            Some(Ok(s)) => Some(s),
            _ => None,
        };
        let mut v = match &ex.candidate {
            Err(e) => candidate_failed(e),
            Ok(c) => self.compare_with(&ex.request, Some(&ex.endpoint), &ex.primary, c, secondary),
        };
        // With a secondary answer, primary-vs-secondary differences in this exchange explain
        // candidate differences on the same fields (see `noise`); text bodies were judged line by
        // line against the secondary's body already (see `text`). A failed secondary explains
        // nothing: the verdict stands as without one.
        if let Some(s) = secondary {
            let nv = self.compare_responses(&ex.request, Some(&ex.endpoint), &ex.primary, s);
            if v.kind == VerdictKind::Mismatch && noise::mark(&mut v.differences, &nv.differences) {
                v.kind = VerdictKind::Noise;
            }
            v.resign();
            v.secondary_differences = Some(nv.differences);
        }
        v
    }

    /// Compares two answers to the same request.
    pub fn compare_responses(
        &self,
        req: &Request,
        endpoint: Option<&str>,
        p: &Response,
        c: &Response,
    ) -> Verdict {
        self.compare_with(req, endpoint, p, c, None)
    }

    /// [`Self::compare_responses`], with the secondary's answer (`s`) to judge text-body noise
    /// line by line. Everything else about noise is [`noise::mark`]'s, after.
    fn compare_with(
        &self,
        req: &Request,
        endpoint: Option<&str>,
        p: &Response,
        c: &Response,
        s: Option<&Response>,
    ) -> Verdict {
        let eff = self.rules.effective(&req.method, &req.path, endpoint);
        let mut diffs = Vec::new();
        if p.status != c.status {
            diffs.push(Difference {
                path: "@status".into(),
                field: "@status".into(),
                kind: DiffKind::Status,
                primary: Value::from(p.status),
                candidate: Value::from(c.status),
                noise: false,
                detail: None,
            });
        }
        diffs.extend(headers::header_diffs(&eff, &p.headers, &c.headers));
        let mut notes = Vec::new();
        let limit = self.opts.max_decoded_bytes;
        let decode = |r: &Response, side: &str, notes: &mut Vec<String>| match decode_body(
            &r.headers, &r.body, limit,
        ) {
            Ok(b) => Ok(b),
            Err(DecodeError::TooLarge { .. }) => Err(()),
            Err(e) => {
                notes.push(format!("{side} body: {e}; compared as sent"));
                Ok(r.body.clone())
            }
        };
        let (Ok(pb), Ok(cb)) = (
            decode(p, "primary", &mut notes),
            decode(c, "candidate", &mut notes),
        ) else {
            let mut v = Verdict::skipped(SkipReason::BodyTooLarge);
            v.notes.push(format!("decoded body exceeds {limit} bytes"));
            return v;
        };
        let mut truncated = false;
        if pb != cb {
            // The secondary's body is only needed (and decoded) when the bodies differ; one that
            // cannot be decoded explains nothing.
            let sb = s.and_then(|s| decode_body(&s.headers, &s.body, limit).ok());
            let body = self.diff_grpc(&eff, &req.path, p, c, &pb, &cb, &mut notes);
            let body = body.unwrap_or_else(|| {
                self.diff_bodies(
                    &eff,
                    &pb,
                    &cb,
                    sb.as_deref(),
                    exchange::media_type(&p.headers).as_deref(),
                    exchange::media_type(&c.headers).as_deref(),
                )
            });
            diffs.extend(body.differences);
            notes.extend(body.notes);
            truncated = body.truncated;
        }
        let server_error = c.status >= 500 && p.status < 500;
        let grpc_failure = grpc::server_failure(&p.headers, &c.headers);
        let mut v = Verdict::from_differences(diffs, notes, truncated);
        if let Some(note) = grpc_failure {
            v.kind = VerdictKind::CandidateError;
            v.notes.push(note);
        } else if server_error {
            v.kind = VerdictKind::CandidateError;
            v.notes.push(format!(
                "candidate answered {} where the primary answered {}",
                c.status, p.status
            ));
        }
        v
    }

    /// Compares two decoded bodies under the rules for `method path` (or an endpoint template).
    pub fn compare_bodies(
        &self,
        endpoint: Option<&str>,
        p: &[u8],
        c: &[u8],
        p_media: Option<&str>,
        c_media: Option<&str>,
    ) -> Verdict {
        self.compare_bodies_with(endpoint, p, c, None, p_media, c_media)
    }

    /// [`Self::compare_bodies`], with the secondary's body: text differences are marked noise
    /// line by line (`text`). JSON differences are not marked here ([`noise::mark`] does that
    /// from the secondary's own differences).
    pub fn compare_bodies_with(
        &self,
        endpoint: Option<&str>,
        p: &[u8],
        c: &[u8],
        secondary: Option<&[u8]>,
        p_media: Option<&str>,
        c_media: Option<&str>,
    ) -> Verdict {
        let (method, path) = endpoint
            .and_then(|e| e.trim().split_once(' '))
            .unwrap_or(("", ""));
        let eff = self.rules.effective(method, path.trim(), endpoint);
        if p == c {
            return Verdict::from_differences(Vec::new(), Vec::new(), false);
        }
        let b = self.diff_bodies(&eff, p, c, secondary, p_media, c_media);
        Verdict::from_differences(b.differences, b.notes, b.truncated)
    }

    /// gRPC answers message by message ([`grpc`]); `None` when they are not both gRPC, or not
    /// both made of messages (noted: they are compared as bodies then).
    #[allow(clippy::too_many_arguments)]
    fn diff_grpc(
        &self,
        eff: &Effective,
        path: &str,
        p: &Response,
        c: &Response,
        pb: &[u8],
        cb: &[u8],
        notes: &mut Vec<String>,
    ) -> Option<BodyDiff> {
        if !grpc::is_grpc(&p.headers) || !grpc::is_grpc(&c.headers) {
            return None;
        }
        let sides = [(&p.headers, pb), (&c.headers, cb)];
        let (limit, max) = (self.opts.max_decoded_bytes, self.opts.max_differences);
        match grpc::diff(eff, self.opts.grpc.as_deref(), path, sides, limit, max) {
            Ok(d) => Some(d),
            Err(e) => {
                notes.push(format!("gRPC {e}; compared as bytes"));
                None
            }
        }
    }

    fn diff_bodies(
        &self,
        eff: &Effective,
        p: &[u8],
        c: &[u8],
        s: Option<&[u8]>,
        p_media: Option<&str>,
        c_media: Option<&str>,
    ) -> BodyDiff {
        let mut notes = Vec::new();
        let (mut p_spare, mut c_spare) = (Vec::new(), Vec::new());
        let pj = parse_json(p, p_media, "primary", &mut notes, |b| {
            scan::scan(b, &mut p_spare)
        });
        let cj = parse_json(c, c_media, "candidate", &mut notes, |b| {
            scan::scan(b, &mut c_spare)
        });
        if let (Some(pv), Some(cv)) = (&pj, &cj) {
            let (differences, truncated) = scan::diff(eff, pv, cv, self.opts.max_differences);
            return BodyDiff {
                differences,
                notes,
                truncated,
            };
        }
        if pj.is_some() != cj.is_some() && !p.is_empty() && !c.is_empty() {
            notes.push(format!(
                "only the {} body is JSON; compared as text",
                if pj.is_some() { "primary" } else { "candidate" }
            ));
        }
        if text::is_binary(p) || text::is_binary(c) {
            return BodyDiff {
                differences: vec![text::binary_diff(p, c, s)],
                notes,
                truncated: false,
            };
        }
        let (ps, cs) = (String::from_utf8_lossy(p), String::from_utf8_lossy(c));
        // A binary secondary body explains no line.
        let ss = s.and_then(|s| (!text::is_binary(s)).then(|| String::from_utf8_lossy(s)));
        let cap = text::MAX_HUNKS.min(self.opts.max_differences);
        let lines = text::text_diff(&ps, &cs, ss.as_deref(), cap);
        let truncated = lines.hunks > self.opts.max_differences;
        let mut differences = lines.differences;
        if differences.is_empty() {
            // Bytes differ but no line does (line endings only, say): still a difference.
            differences.push(text::binary_diff(p, c, s));
        }
        BodyDiff {
            differences,
            notes,
            truncated,
        }
    }
}

struct BodyDiff {
    differences: Vec<Difference>,
    notes: Vec<String>,
    truncated: bool,
}

fn candidate_failed(e: &UpstreamError) -> Verdict {
    let class = match e {
        UpstreamError::Timeout(_) => "timeout",
        UpstreamError::Refused(_) => "refused",
        UpstreamError::Reset(_) => "reset",
        UpstreamError::TooLarge(_) => "too_large",
        UpstreamError::Other(_) => "error",
    };
    Verdict {
        kind: VerdictKind::CandidateError,
        skip_reason: None,
        differences: Vec::new(),
        signature: Some(signature_hash([
            b"candidate_error\0".as_slice(),
            class.as_bytes(),
        ])),
        notes: vec![format!("candidate: {e}")],
        truncated: false,
        secondary_differences: None,
    }
}

/// Parses a body as JSON (with `parse`) when it looks like JSON. The content type is a hint: a
/// JSON type with an invalid body is noted (and the body compared as text); any body that parses
/// is JSON.
fn parse_json<'b, T>(
    b: &'b [u8],
    media: Option<&str>,
    side: &str,
    notes: &mut Vec<String>,
    parse: impl FnOnce(&'b [u8]) -> Result<T, serde_json::Error>,
) -> Option<T> {
    let declared = media.is_some_and(exchange::is_json_media);
    let first = b.iter().find(|c| !c.is_ascii_whitespace());
    let plausible = matches!(
        first,
        Some(b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
    );
    if !plausible {
        if declared && !b.is_empty() {
            notes.push(format!(
                "{side} body is declared {} but is not valid JSON; compared as text",
                media.unwrap_or("")
            ));
        }
        return None;
    }
    match parse(b) {
        Ok(v) => Some(v),
        Err(e) => {
            if declared {
                notes.push(format!(
                    "{side} body is declared {} but is not valid JSON ({e}); compared as text",
                    media.unwrap_or("")
                ));
            } else if first.is_some_and(|c| matches!(c, b'{' | b'[')) {
                notes.push(format!(
                    "{side} body looks like JSON but does not parse ({e}); compared as text"
                ));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests;
