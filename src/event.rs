//! The published event, `shadowdiff.exchange.v1` (DESIGN.md, "Event schema"): what the file and
//! Kafka sinks write and what the admin API serves. Built once per published verdict; every
//! field taken from traffic goes through [`Redaction`] here, so no sink can forget to.

/// The "no planted secret survives" property over published events (the `redact` fuzz target
/// and its corpus replay in `tests/redaction.rs`).
#[doc(hidden)]
pub mod planted;

use crate::compare::{Difference, SkipReason, Verdict, VerdictKind};
use crate::exchange::{Exchange, Outcome, Request, Response};
use crate::redact::Redaction;
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

/// RFC 3339 UTC with milliseconds.
pub fn format_ts(ts: SystemTime) -> String {
    humantime::format_rfc3339_millis(ts).to_string()
}

impl Event {
    /// Builds the published form of a compared exchange. Every string taken from traffic
    /// (endpoint, method, path, query, headers, bodies, differences, notes, errors) is redacted
    /// and capped by `r`; `id`, `ts`, `source` and `signature` are made by shadowdiff.
    pub fn build(ex: &Exchange, v: &Verdict, instance: &str, r: &Redaction) -> Event {
        Event {
            schema: SCHEMA.to_string(),
            id: ex.id.clone(),
            ts: format_ts(ex.ts),
            source: ex.source.to_string(),
            instance: r.text(instance),
            endpoint: r.text(&ex.endpoint),
            request: request(&ex.request, r),
            primary: response(&ex.primary, r),
            candidate: Some(outcome(&ex.candidate, r)),
            secondary: ex.secondary.as_ref().map(|o| outcome(o, r)),
            verdict: v.kind,
            skip_reason: v.skip_reason,
            differences: r.differences(ex, &v.differences),
            signature: v.signature.clone(),
            // Notes may quote traffic (a candidate error names the answer's bytes).
            notes: v.notes.iter().map(|n| r.quoted(n)).collect(),
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
        method: r.text(&q.method),
        path: r.text(&q.path),
        query: q.query.as_deref().map(|q| r.query(q)),
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
            error: Some(r.quoted(&e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::compare::rules::RuleSet;
    use crate::compare::{Comparator, CompareOptions, REDACTED};
    use crate::redact::RedactConfig;
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
        let cfg: RedactConfig =
            serde_yaml_ng::from_str("{headers: [X-Api-Key], paths: [/ssn, /card]}").unwrap();
        let red = Redaction::from_config(&cfg, 4096);
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
        // The /ssn and /card/number differences are still reported, with values redacted (and
        // the keys below the redacted /card too: they are part of its value).
        let ssn = ev.differences.iter().find(|d| d.path == "/ssn").unwrap();
        assert_eq!(ssn.primary, Value::String(REDACTED.into()));
        let card = ev
            .differences
            .iter()
            .find(|d| d.path == "/card/<redacted>")
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
        let ev = Event::build(
            &ex,
            &v,
            "i",
            &Redaction::from_config(&RedactConfig::default(), 1000),
        );
        let Value::String(s) = &ev.primary.body else {
            panic!("expected truncated string, got {:?}", ev.primary.body)
        };
        assert!(s.len() < 1100 && s.contains("truncated"), "{s}");
    }
}
