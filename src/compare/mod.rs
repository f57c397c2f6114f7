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

use crate::exchange::{self, DecodeError, Exchange, Request, Response, UpstreamError, decode_body};
use rules::{Effective, RuleSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

pub use json::excerpt;

/// The kind of one difference (DESIGN.md, "Difference kinds and verdicts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    Value,
    Type,
    Missing,
    Added,
    Length,
    Order,
    Status,
    Header,
    Body,
}

impl DiffKind {
    /// Every kind, in declaration order: `ALL[k.index()] == k`.
    pub const ALL: [DiffKind; 9] = [
        Self::Value,
        Self::Type,
        Self::Missing,
        Self::Added,
        Self::Length,
        Self::Order,
        Self::Status,
        Self::Header,
        Self::Body,
    ];

    /// Position in [`Self::ALL`]: the index of per-kind counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Value => "value",
            DiffKind::Type => "type",
            DiffKind::Missing => "missing",
            DiffKind::Added => "added",
            DiffKind::Length => "length",
            DiffKind::Order => "order",
            DiffKind::Status => "status",
            DiffKind::Header => "header",
            DiffKind::Body => "body",
        }
    }
}

/// One difference. `path` is the concrete JSON Pointer into the body, `field` the same with array
/// indices as `*`. Status and header differences use the pseudo-paths `@status` and
/// `@headers/<name>` so they can never be confused with a body pointer (which is `""` or starts
/// with `/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub path: String,
    pub field: String,
    pub kind: DiffKind,
    pub primary: Value,
    pub candidate: Value,
    #[serde(default)]
    pub noise: bool,
    /// A short unified excerpt for `body` differences, or a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Match,
    Mismatch,
    Noise,
    CandidateError,
    Skipped,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 5] = [
        Self::Match,
        Self::Mismatch,
        Self::Noise,
        Self::CandidateError,
        Self::Skipped,
    ];

    /// Position in [`Self::ALL`]: the index of per-verdict counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Match => "match",
            VerdictKind::Mismatch => "mismatch",
            VerdictKind::Noise => "noise",
            VerdictKind::CandidateError => "candidate_error",
            VerdictKind::Skipped => "skipped",
        }
    }
}

/// Why an exchange was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    MethodNotMirrored,
    SampledOut,
    BodyTooLarge,
    ShadowQueueFull,
    CompareQueueFull,
    CircuitOpen,
    ShadowLoop,
    PrimaryError,
    /// Keeping the copies would have crossed `shadow.max_buffered_bytes`.
    MemoryBudget,
    /// The proxy's I/O threads were saturated (`shadow.overload`): forwarding came first.
    Overload,
}

impl SkipReason {
    pub const ALL: [SkipReason; 10] = [
        Self::MethodNotMirrored,
        Self::SampledOut,
        Self::BodyTooLarge,
        Self::ShadowQueueFull,
        Self::CompareQueueFull,
        Self::CircuitOpen,
        Self::ShadowLoop,
        Self::PrimaryError,
        Self::MemoryBudget,
        Self::Overload,
    ];

    /// Position in [`Self::ALL`]: the index of per-reason counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MethodNotMirrored => "method_not_mirrored",
            SkipReason::SampledOut => "sampled_out",
            SkipReason::BodyTooLarge => "body_too_large",
            SkipReason::ShadowQueueFull => "shadow_queue_full",
            SkipReason::CompareQueueFull => "compare_queue_full",
            SkipReason::CircuitOpen => "circuit_open",
            SkipReason::ShadowLoop => "shadow_loop",
            SkipReason::PrimaryError => "primary_error",
            SkipReason::MemoryBudget => "memory_budget",
            SkipReason::Overload => "overload",
        }
    }
}

/// The outcome of comparing one exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    pub skip_reason: Option<SkipReason>,
    pub differences: Vec<Difference>,
    /// Stable hash of the set of (field, kind) pairs; `None` for match and skipped.
    pub signature: Option<String>,
    /// Remarks a reviewer needs (for example "declared JSON but invalid; compared as text").
    pub notes: Vec<String>,
    /// More differences existed than `max_differences`; the list is a prefix.
    pub truncated: bool,
    /// primary-vs-secondary differences, when a secondary answered: what noise learning counts.
    #[serde(skip)]
    pub secondary_differences: Option<Vec<Difference>>,
}

impl Verdict {
    pub fn skipped(reason: SkipReason) -> Self {
        Verdict {
            kind: VerdictKind::Skipped,
            skip_reason: Some(reason),
            differences: Vec::new(),
            signature: None,
            notes: Vec::new(),
            truncated: false,
            secondary_differences: None,
        }
    }

    fn from_differences(differences: Vec<Difference>, notes: Vec<String>, truncated: bool) -> Self {
        let kind = if differences.is_empty() {
            VerdictKind::Match
        } else {
            VerdictKind::Mismatch
        };
        let signature = (!differences.is_empty()).then(|| signature(&differences));
        Verdict {
            kind,
            skip_reason: None,
            differences,
            signature,
            notes,
            truncated,
            secondary_differences: None,
        }
    }
}

impl Verdict {
    /// Recomputes the signature after noise marking: a mismatch is signed by its real
    /// differences only, so the same failure clusters together whatever noise came with it in
    /// each exchange; a verdict made only of noise is signed by all of it.
    pub fn resign(&mut self) {
        if self.differences.is_empty() {
            return;
        }
        let any_real = self.differences.iter().any(|d| !d.noise);
        self.signature = Some(signature_of(
            self.differences.iter().filter(|d| !any_real || !d.noise),
        ));
    }
}

/// Stable 32-bit hex hash of the set of (field, kind) pairs: identical failures share it, across
/// runs and machines (SHA-256 of the sorted, de-duplicated pairs).
pub fn signature(diffs: &[Difference]) -> String {
    signature_of(diffs.iter())
}

fn signature_of<'a>(diffs: impl Iterator<Item = &'a Difference>) -> String {
    let mut pairs: Vec<(&str, &str)> = diffs.map(|d| (d.field.as_str(), d.kind.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    signature_hash(
        pairs
            .iter()
            .flat_map(|(f, k)| [f.as_bytes(), &[0], k.as_bytes(), b"\n"]),
    )
}

/// The one signature hash: the first 4 bytes of SHA-256 over `parts`, in hex. Every signature
/// (differences, candidate errors) goes through it, so they share a format and a space.
fn signature_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
