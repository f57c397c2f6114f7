//! Bodies as published, and `body` (line) differences computed again from those renderings so
//! that no raw body text reaches an event.

use super::{Redaction, cap_str, decode_limit, withheld};
use crate::compare::{DiffKind, Difference, REDACTED};
use crate::exchange::{self, Exchange};
use serde_json::Value;

/// What [`Redaction::recorded_body`] made of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedBody {
    /// Nothing hidden in it: record the bytes as sent.
    Unchanged,
    /// Redacted after undoing its content coding: encode it again before recording.
    Decoded(Vec<u8>),
    /// Redacted as sent (no content coding, or one that could not be undone).
    AsSent(Vec<u8>),
    /// Too large to decode within the limit: it cannot be recorded redacted.
    TooLarge,
}

/// What a decoded body is, for publishing.
enum Rendered {
    /// Parsed JSON, masked and scrubbed.
    Json(Value),
    /// Text, masked line by line, scrubbed (or withheld).
    Text(String),
    /// Not text: only its size is published.
    Binary(usize),
    /// Could not be decoded within the limit.
    Undecoded(String),
}

impl Redaction {
    /// The body as published: JSON when it parses (redacted), text otherwise (redacted), a
    /// placeholder for binary; capped at `max_body_bytes`.
    pub fn body(&self, headers: &http::HeaderMap, raw: &bytes::Bytes) -> Value {
        if raw.is_empty() {
            return Value::Null;
        }
        match self.render(headers, raw) {
            Rendered::Json(v) => {
                let text = v.to_string();
                if text.len() <= self.max_bytes {
                    v
                } else {
                    Value::String(cap_str(&text, self.max_bytes))
                }
            }
            Rendered::Text(s) => Value::String(cap_str(&s, self.max_bytes)),
            Rendered::Binary(n) => Value::String(format!("<binary, {n} bytes>")),
            Rendered::Undecoded(s) => Value::String(s),
        }
    }

    /// A body as a recording keeps it (`record:`): the same masking as a published body, but
    /// whole — never capped nor pretty-printed — and left byte for byte as it was when nothing
    /// in it is hidden, so a recording stays faithful (a gzip body stays the same gzip).
    /// Decoding stops at `limit` bytes.
    pub fn recorded_body(
        &self,
        headers: &http::HeaderMap,
        raw: &bytes::Bytes,
        limit: usize,
    ) -> RecordedBody {
        if raw.is_empty() {
            return RecordedBody::Unchanged;
        }
        let (decoded, was_decoded) = match exchange::decode_body(headers, raw, limit) {
            Ok(b) => {
                let changed = b != *raw;
                (b, changed)
            }
            Err(exchange::DecodeError::TooLarge { .. }) => return RecordedBody::TooLarge,
            Err(_) => (raw.clone(), false),
        };
        let redacted = if let Ok(v) = serde_json::from_slice::<Value>(&decoded) {
            let mut m = v.clone();
            self.json_doc(&mut m);
            if m == v {
                return RecordedBody::Unchanged;
            }
            m.to_string()
        } else {
            match std::str::from_utf8(&decoded) {
                Ok(s) if !s.contains('\0') => {
                    let form = exchange::media_type(headers)
                        .is_some_and(|m| m == "application/x-www-form-urlencoded");
                    let t = self.render_text(s, form);
                    if t == s {
                        return RecordedBody::Unchanged;
                    }
                    t
                }
                // Binary: no detector reads it; kept as sent.
                _ => return RecordedBody::Unchanged,
            }
        };
        if was_decoded {
            RecordedBody::Decoded(redacted.into_bytes())
        } else {
            RecordedBody::AsSent(redacted.into_bytes())
        }
    }

    fn render(&self, headers: &http::HeaderMap, raw: &bytes::Bytes) -> Rendered {
        let decoded = match exchange::decode_body(headers, raw, decode_limit(self.max_bytes)) {
            Ok(b) => b,
            Err(exchange::DecodeError::TooLarge { .. }) => {
                return Rendered::Undecoded(format!(
                    "<{} bytes, too large to publish redacted>",
                    raw.len()
                ));
            }
            // The comparator compared such a body as sent; so is it rendered.
            Err(_) => raw.clone(),
        };
        if let Ok(mut v) = serde_json::from_slice::<Value>(&decoded) {
            self.json_doc(&mut v);
            return Rendered::Json(v);
        }
        match std::str::from_utf8(&decoded) {
            Ok(s) if !s.contains('\0') => {
                let form = exchange::media_type(headers)
                    .is_some_and(|m| m == "application/x-www-form-urlencoded");
                Rendered::Text(self.render_text(s, form))
            }
            _ => Rendered::Binary(decoded.len()),
        }
    }

    /// Text that quotes traffic without being a body — an error naming what an upstream
    /// answered (`invalid answer: chunk size "…"`) — as events and logs publish it: rendered as
    /// a text body (withheld when it mentions a redacted field, else scrubbed), then capped.
    pub fn quoted(&self, s: &str) -> String {
        cap_str(&self.render_text(s, false), self.max_bytes)
    }

    /// Text from traffic: lines that are JSON documents (NDJSON) are masked like JSON bodies;
    /// if any other line mentions a redacted key as a field, the whole text is withheld; a form
    /// loses its hidden parameters' values; then the whole is scrubbed.
    fn render_text(&self, s: &str, form: bool) -> String {
        let mut out = String::with_capacity(s.len());
        let mut withhold = false;
        for line in s.split_inclusive('\n') {
            let content = line.trim_end_matches(['\n', '\r']);
            let t = content.trim_start();
            if (t.starts_with('{') || t.starts_with('['))
                && let Ok(mut v) = serde_json::from_str::<Value>(content)
            {
                self.json_doc(&mut v);
                out.push_str(&v.to_string());
                out.push_str(&line[content.len()..]);
                continue;
            }
            withhold = withhold
                || (self.withhold_all_text && !t.is_empty())
                || self.mentions_redacted_key(content);
            out.push_str(line);
        }
        if withhold {
            return withheld(s.len());
        }
        let out = if form { self.query_pairs(&out) } else { out };
        self.scrub(&out).into_owned()
    }

    fn published(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(&s)),
            other => self.cap_value(other),
        }
    }

    /// The `body` differences of `ex` as published: the line diff of the two redacted
    /// renderings (a JSON side pretty-printed). Binary bodies keep the comparator's difference
    /// (sizes and hashes only).
    pub(super) fn body_differences(
        &self,
        ex: &Exchange,
        original: &[Difference],
        noise: bool,
    ) -> Vec<Difference> {
        let placeholder = |detail: &str| Difference {
            path: String::new(),
            field: String::new(),
            kind: DiffKind::Body,
            primary: Value::String(REDACTED.into()),
            candidate: Value::String(REDACTED.into()),
            noise,
            detail: Some(detail.to_string()),
        };
        let Ok(c) = &ex.candidate else {
            return vec![placeholder("bodies differ")];
        };
        let p = &ex.primary;
        let sides = (
            self.render(&p.headers, &p.body),
            self.render(&c.headers, &c.body),
        );
        let text = |r: Rendered| match r {
            Rendered::Json(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Rendered::Text(s) | Rendered::Undecoded(s) => s,
            Rendered::Binary(_) => String::new(),
        };
        if matches!(sides.0, Rendered::Binary(_)) || matches!(sides.1, Rendered::Binary(_)) {
            // Binary differences carry sizes and hashes, nothing of the content.
            return original
                .iter()
                .filter(|d| d.kind == DiffKind::Body)
                .map(|d| Difference {
                    noise,
                    ..self.difference(d)
                })
                .collect();
        }
        let (pt, ct) = (text(sides.0), text(sides.1));
        // Some hunks noise and some real (text judged line by line): the renderings are judged
        // the same way against the secondary's rendering, so the published hunks carry the
        // marks; otherwise every hunk carries the comparator's one mark.
        let mixed = !noise && original.iter().any(|d| d.kind == DiffKind::Body && d.noise);
        let st = match (&ex.secondary, mixed) {
            (Some(Ok(s)), true) => match self.render(&s.headers, &s.body) {
                Rendered::Binary(_) => None,
                r => Some(text(r)),
            },
            _ => None,
        };
        let v = self.text_diff.compare_bodies_with(
            None,
            pt.as_bytes(),
            ct.as_bytes(),
            st.as_deref().map(str::as_bytes),
            None,
            None,
        );
        if v.differences.is_empty() {
            return vec![placeholder("the bodies differ only in redacted parts")];
        }
        v.differences
            .into_iter()
            .map(|d| Difference {
                path: self.text(&d.path),
                field: self.text(&d.field),
                kind: d.kind,
                // Made of redacted renderings already; scrubbed again all the same, as every
                // published string is.
                primary: self.published(d.primary),
                candidate: self.published(d.candidate),
                noise: if mixed { d.noise } else { noise },
                detail: d.detail.map(|s| self.text(&s)),
            })
            .collect()
    }
}
