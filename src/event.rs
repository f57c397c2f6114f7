//! The published event, `shadowdiff.exchange.v1` (DESIGN.md, "Event schema"): what the file and
//! Kafka sinks write and what the admin API serves. Built once per published verdict, redacted
//! and truncated here so no sink can forget to.

use crate::compare::pattern::{PathPattern, PathSeg};
use crate::compare::{ALWAYS_REDACTED, Difference, REDACTED, SkipReason, Verdict, VerdictKind};
use crate::exchange::{self, Exchange, Outcome, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::SystemTime;

pub const SCHEMA: &str = "shadowdiff.exchange.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: String,
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub source: String,
    pub instance: String,
    pub endpoint: String,
    pub request: EventRequest,
    pub primary: EventResponse,
    pub candidate: Option<EventResponse>,
    pub secondary: Option<EventResponse>,
    pub verdict: VerdictKind,
    pub skip_reason: Option<SkipReason>,
    pub differences: Vec<Difference>,
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// When the shadow requests left relative to the primary's, and the skew between the three
    /// sends (an addition to DESIGN.md's schema; absent when the source did not send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sends: Option<crate::exchange::SendOffsets>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventResponse {
    pub status: Option<u16>,
    pub latency_us: Option<u64>,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What is never published, and how much of a body is.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Lower-cased header names whose values are replaced; always includes [`ALWAYS_REDACTED`].
    pub headers: Vec<String>,
    /// Body paths whose values are replaced (in bodies and in differences).
    pub paths: Vec<PathPattern>,
    /// Bodies larger than this (decoded, serialised) are published as a truncated string.
    pub max_body_bytes: usize,
}

impl Default for Redaction {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new(), 16 << 10)
    }
}

impl Redaction {
    pub fn new(headers: Vec<String>, paths: Vec<PathPattern>, max_body_bytes: usize) -> Self {
        let mut h: Vec<String> = ALWAYS_REDACTED.iter().map(|s| s.to_string()).collect();
        for x in headers {
            let x = x.to_ascii_lowercase();
            if !h.contains(&x) {
                h.push(x);
            }
        }
        Self {
            headers: h,
            paths,
            max_body_bytes,
        }
    }

    fn headers(&self, map: &http::HeaderMap) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for name in map.keys() {
            let n = name.as_str();
            let v = if self.headers.iter().any(|h| h == n) {
                REDACTED.to_string()
            } else {
                map.get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.insert(n.to_string(), v);
        }
        out
    }

    /// The body as published: JSON when it parses (with redacted paths), text otherwise,
    /// a placeholder for binary, truncated to `max_body_bytes`.
    fn body(&self, headers: &http::HeaderMap, raw: &bytes::Bytes) -> Value {
        if raw.is_empty() {
            return Value::Null;
        }
        let decoded = match exchange::decode_body(
            headers,
            raw,
            self.max_body_bytes.saturating_mul(64).max(1 << 20),
        ) {
            Ok(b) => b,
            Err(e) => return Value::String(format!("<{} bytes, not decoded: {e}>", raw.len())),
        };
        if let Ok(mut v) = serde_json::from_slice::<Value>(&decoded) {
            self.redact_value(&mut v);
            if decoded.len() <= self.max_body_bytes {
                return v;
            }
            let text = v.to_string();
            return Value::String(truncate(&text, self.max_body_bytes));
        }
        match std::str::from_utf8(&decoded) {
            Ok(s) if !s.contains('\0') => Value::String(truncate(s, self.max_body_bytes)),
            _ => Value::String(format!("<binary, {} bytes>", decoded.len())),
        }
    }

    fn redact_value(&self, v: &mut Value) {
        if self.paths.is_empty() {
            return;
        }
        let mut path = Vec::new();
        redact_walk(v, &self.paths, &mut path);
    }

    /// Whether a difference's concrete path falls under a redacted path (or is a redacted header).
    fn difference(&self, d: &mut Difference) {
        let hit = match d.path.strip_prefix("@headers/") {
            Some(h) => self.headers.iter().any(|x| x == h),
            None => {
                let segs: Vec<String> = d
                    .path
                    .split('/')
                    .skip(1)
                    .map(|s| crate::compare::pattern::unescape(s).unwrap_or_default())
                    .collect();
                self.paths.iter().any(|p| {
                    // A redacted path also covers everything beneath it.
                    (0..=segs.len()).any(|n| p.matches(segs[..n].iter().map(|s| seg_of(s))))
                })
            }
        };
        if hit {
            if !d.primary.is_null() {
                d.primary = Value::String(REDACTED.into());
            }
            if !d.candidate.is_null() {
                d.candidate = Value::String(REDACTED.into());
            }
            d.detail = None;
        }
    }
}

fn seg_of(s: &str) -> PathSeg<'_> {
    match s.parse::<usize>() {
        Ok(i) if !s.starts_with('+') && (s == "0" || !s.starts_with('0')) => PathSeg::Index(i),
        _ => PathSeg::Key(s),
    }
}

fn redact_walk(v: &mut Value, paths: &[PathPattern], path: &mut Vec<String>) {
    if paths
        .iter()
        .any(|p| p.matches(path.iter().map(|s| seg_of(s))))
    {
        *v = Value::String(REDACTED.into());
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                path.push(k.clone());
                redact_walk(child, paths, path);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                path.push(i.to_string());
                redact_walk(child, paths, path);
                path.pop();
            }
        }
        _ => {}
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!(
        "{}… (truncated, {} bytes)",
        &s[..s.floor_char_boundary(max)],
        s.len()
    )
}

/// RFC 3339 UTC with milliseconds.
pub fn format_ts(ts: SystemTime) -> String {
    humantime::format_rfc3339_millis(ts).to_string()
}

impl Event {
    /// Builds the published form of a compared exchange.
    pub fn build(ex: &Exchange, v: &Verdict, instance: &str, r: &Redaction) -> Event {
        let mut differences = v.differences.clone();
        for d in &mut differences {
            r.difference(d);
        }
        Event {
            schema: SCHEMA.to_string(),
            id: ex.id.clone(),
            ts: format_ts(ex.ts),
            source: ex.source.to_string(),
            instance: instance.to_string(),
            endpoint: ex.endpoint.clone(),
            request: request(&ex.request, r),
            primary: response(&ex.primary, r),
            candidate: Some(outcome(&ex.candidate, r)),
            secondary: ex.secondary.as_ref().map(|o| outcome(o, r)),
            verdict: v.kind,
            skip_reason: v.skip_reason,
            differences,
            signature: v.signature.clone(),
            notes: v.notes.clone(),
            truncated: v.truncated,
            sends: ex.sends,
        }
    }

    /// One JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"schema\":\"{SCHEMA}\",\"error\":\"{e}\"}}"))
    }
}

fn request(q: &Request, r: &Redaction) -> EventRequest {
    EventRequest {
        method: q.method.clone(),
        path: q.path.clone(),
        query: q.query.clone(),
        headers: r.headers(&q.headers),
        body: r.body(&q.headers, &q.body),
    }
}

fn response(p: &Response, r: &Redaction) -> EventResponse {
    EventResponse {
        status: Some(p.status),
        latency_us: Some(p.latency.as_micros() as u64),
        headers: r.headers(&p.headers),
        body: r.body(&p.headers, &p.body),
        error: None,
    }
}

fn outcome(o: &Outcome, r: &Redaction) -> EventResponse {
    match o {
        Ok(p) => response(p, r),
        Err(e) => EventResponse {
            status: None,
            latency_us: None,
            headers: BTreeMap::new(),
            body: Value::Null,
            error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::compare::rules::RuleSet;
    use crate::compare::{Comparator, CompareOptions};
    use std::sync::Arc;

    fn exchange(p: &str, c: &str) -> Exchange {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer secret-token".parse().unwrap());
        h.insert("cookie", "session=abc".parse().unwrap());
        h.insert("x-api-key", "k-123".parse().unwrap());
        let resp = |b: &str, sc: &str| {
            let mut rh = http::HeaderMap::new();
            rh.insert("set-cookie", sc.parse().unwrap());
            rh.insert("content-type", "application/json".parse().unwrap());
            Response {
                status: 200,
                headers: rh,
                body: bytes::Bytes::from(b.to_string()),
                latency: std::time::Duration::from_micros(1500),
            }
        };
        Exchange {
            id: "01TEST".into(),
            ts: SystemTime::UNIX_EPOCH,
            source: "proxy",
            endpoint: "GET /users/{id}".into(),
            request: Request {
                method: "GET".into(),
                path: "/users/7".into(),
                query: Some("x=1".into()),
                headers: h,
                body: bytes::Bytes::new(),
            },
            primary: resp(p, "sid=one"),
            candidate: Ok(resp(c, "sid=two")),
            secondary: None,
            sends: None,
        }
    }

    #[test]
    fn secrets_never_appear_in_the_event() {
        let ex = exchange(
            r#"{"name":"a","ssn":"111-22-3333","card":{"number":"4111"}}"#,
            r#"{"name":"b","ssn":"999-88-7777","card":{"number":"5500"}}"#,
        );
        let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
        let v = cmp.compare(&ex);
        let red = Redaction::new(
            vec!["X-Api-Key".into()],
            vec![
                PathPattern::parse("/ssn").unwrap(),
                PathPattern::parse("/card").unwrap(),
            ],
            4096,
        );
        let line = Event::build(&ex, &v, "pod-1", &red).to_json_line();
        for secret in [
            "secret-token",
            "session=abc",
            "sid=one",
            "sid=two",
            "k-123",
            "111-22-3333",
            "999-88-7777",
            "4111",
            "5500",
        ] {
            assert!(!line.contains(secret), "{secret} leaked in {line}");
        }
        assert!(line.contains("\"name\":\"a\""), "{line}");
        let ev: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(ev.schema, SCHEMA);
        assert_eq!(ev.ts, "1970-01-01T00:00:00.000Z");
        assert_eq!(ev.verdict, VerdictKind::Mismatch);
        // The /ssn and /card/number differences are still reported, with values redacted.
        let ssn = ev.differences.iter().find(|d| d.path == "/ssn").unwrap();
        assert_eq!(ssn.primary, Value::String(REDACTED.into()));
        let card = ev
            .differences
            .iter()
            .find(|d| d.path == "/card/number")
            .unwrap();
        assert_eq!(card.candidate, Value::String(REDACTED.into()));
        assert_eq!(ev.primary.latency_us, Some(1500));
    }

    #[test]
    fn large_bodies_are_truncated() {
        let big = format!("{{\"data\":\"{}\"}}", "x".repeat(10_000));
        let ex = exchange(&big, "{}");
        let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
        let v = cmp.compare(&ex);
        let ev = Event::build(&ex, &v, "i", &Redaction::new(vec![], vec![], 1000));
        let Value::String(s) = &ev.primary.body else {
            panic!("expected truncated string, got {:?}", ev.primary.body)
        };
        assert!(s.len() < 1100 && s.contains("truncated"), "{s}");
    }
}
