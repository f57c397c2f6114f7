//! The property behind the `redact` fuzz target (`fuzz/fuzz_targets/redact.rs`) and its corpus
//! replay (`tests/redaction.rs`): **no planted secret survives**. Bytes drive a generator of a
//! primary JSON document and a candidate (a mutation of it, another document, or text);
//! secrets are planted at redacted paths, in query strings, in headers and as e-mail, card and
//! bearer strings; the pair is compared and published with [`super::Event::build`], and the event's
//! JSON text must hold no piece of any secret.
//!
//! Telling a leak from chance: every secret is spelt with the letter `Q`, and nothing else the
//! generator writes can hold one (generated text is lower-case, keys come from a fixed list, and
//! no marker shadowdiff writes has a `Q`). So any `Q` in the event is a leaked piece of a secret,
//! however it was cut. The one secret without a `Q` — a card number — is checked by its digits.

use super::Event;
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions};
use crate::exchange::{Exchange, Request, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::redact::{RedactConfig, Redaction};

/// The redacted paths the generator plants under.
pub const PATHS: &str = "{paths: [/card/number, /acct/*/secret, /**/token]}";
const CARD: &str = "4111 1111 1111 1111";
const CARD_DIGITS: &str = "4111111111111111";
const KEYS: &[&str] = &[
    "a", "b", "id", "name", "items", "card", "number", "acct", "secret", "token", "x",
];

/// What one input exercised (so the replay can tell the property was not vacuous).
#[derive(Debug, Default, Clone, Copy)]
pub struct Exercised {
    pub planted: usize,
    pub differences: usize,
    pub body_differences: usize,
}

struct Gen<'a> {
    data: &'a [u8],
    pos: usize,
    planted: usize,
}

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn secret(&mut self) -> String {
        self.planted += 1;
        let (n, salt) = (self.planted, self.byte());
        format!("Q{n}Q-secret-Q{salt}Q")
    }

    /// Lower-case text, no digits or `@`: it can neither spell a secret nor complete one.
    fn text(&mut self) -> String {
        let n = usize::from(self.byte() % 12);
        (0..n)
            .map(|_| match self.byte() % 32 {
                26 => ' ',
                27 => '.',
                28 => '-',
                29 => '"',
                30 => ':',
                31 => '\n',
                c => char::from(b'a' + c),
            })
            .collect()
    }

    fn value(&mut self, depth: usize) -> Value {
        let op = if depth > 4 || self.done() {
            self.byte() % 4
        } else {
            self.byte() % 9
        };
        match op {
            0 => Value::Null,
            1 => Value::Bool(self.byte().is_multiple_of(2)),
            2 => json!(u32::from(self.byte()) * 1000 + u32::from(self.byte())),
            3 => Value::String(self.text()),
            4 => {
                let n = self.byte() % 4;
                Value::Array((0..n).map(|_| self.value(depth + 1)).collect())
            }
            5 => {
                let mut m = Map::new();
                for _ in 0..self.byte() % 4 {
                    let k = KEYS[usize::from(self.byte()) % KEYS.len()];
                    m.insert(k.to_string(), self.value(depth + 1));
                }
                Value::Object(m)
            }
            // A token anywhere (`/**/token`), beside ordinary fields.
            6 => {
                let mut m = Map::new();
                m.insert("id".into(), json!(self.byte()));
                m.insert("token".into(), Value::String(self.secret()));
                Value::Object(m)
            }
            // A string holding something the detectors must catch.
            7 => {
                let (a, b) = (self.text(), self.text());
                let s = self.secret();
                let planted = match self.byte() % 4 {
                    0 => format!("{a} {s}@Qexample.com {b}"),
                    1 => format!("{a} {CARD} {b}"),
                    2 => format!("{a} Bearer {s} {b}"),
                    _ => format!("{a} eyJhbGciOiJIUzI1NiJ9.eyJ{s}.sig{s} {b}"),
                };
                Value::String(planted)
            }
            _ => {
                let n = self.byte() % 3;
                Value::Array(
                    (0..n)
                        .map(|_| {
                            let mut m = Map::new();
                            m.insert("token".into(), Value::String(self.secret()));
                            m.insert("n".into(), self.value(depth + 2));
                            Value::Object(m)
                        })
                        .collect(),
                )
            }
        }
    }

    /// A document with secrets at the root-anchored redacted paths.
    fn document(&mut self) -> Value {
        let mut root = match self.value(0) {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("x".into(), other);
                m
            }
        };
        let card = json!({"number": self.secret(), "brand": self.text()});
        let acct = json!({"main": {"secret": self.secret(), "tier": self.text()}});
        root.insert("card".into(), card);
        root.insert("acct".into(), acct);
        Value::Object(root)
    }

    /// A candidate made from the primary: subtrees dropped, types changed, arrays reversed.
    fn mutate(&mut self, v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    match self.byte() % 5 {
                        0 => {}                                                       // missing
                        1 => drop(out.insert(k.clone(), Value::String(self.text()))), // type
                        _ => drop(out.insert(k.clone(), self.mutate(x))),
                    }
                }
                if self.byte().is_multiple_of(4) {
                    out.insert("added".into(), self.value(2));
                }
                Value::Object(out)
            }
            Value::Array(a) => {
                let mut out: Vec<Value> = a.iter().map(|x| self.mutate(x)).collect();
                match self.byte() % 4 {
                    0 => out.reverse(),
                    1 => drop(out.pop()),
                    _ => {}
                }
                Value::Array(out)
            }
            other if self.byte().is_multiple_of(3) => Value::String(format!("{other}x")),
            other => other.clone(),
        }
    }
}

fn response(body: String, json: bool, header: &str) -> Response {
    let mut h = http::HeaderMap::new();
    let ct = if json {
        "application/json"
    } else {
        "text/plain"
    };
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ct),
    );
    if let Ok(v) = http::HeaderValue::from_str(header) {
        h.insert("x-session", v);
    }
    Response {
        status: 200,
        headers: h,
        body: bytes::Bytes::from(body),
        latency: Duration::from_micros(10),
    }
}

/// Runs the property on one input: `Err` names the leak and shows the event.
pub fn check(data: &[u8]) -> Result<Exercised, String> {
    let mut g = Gen {
        data,
        pos: 0,
        planted: 0,
    };
    let max = 64 + usize::from(g.byte()) * 16;
    let primary = g.document();
    let (candidate, candidate_json) = match g.byte() % 4 {
        0 => (g.document(), true),
        1 => (Value::String(g.text()), false),
        _ => (g.mutate(&primary), true),
    };
    let render = |v: &Value, pretty: bool| {
        if pretty {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            v.to_string()
        }
    };
    let p_body = render(&primary, g.byte().is_multiple_of(2));
    let c_body = match &candidate {
        Value::String(s) if !candidate_json => format!("{s}\nplain text answer\n"),
        v => render(v, g.byte().is_multiple_of(2)),
    };
    let (s1, s2, s3) = (g.secret(), g.secret(), g.secret());
    let mut req_headers = http::HeaderMap::new();
    for (name, value) in [
        ("authorization", format!("Bearer {s1}")),
        ("cookie", format!("sid={s2}")),
        ("x-assertion", format!("eyJhbGciOiJIUzI1NiJ9.eyJ{s3}.sig")),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            req_headers.insert(name, v);
        }
    }
    let ex = Exchange {
        id: "01FUZZ".into(),
        ts: SystemTime::UNIX_EPOCH,
        source: "proxy",
        endpoint: "GET /fuzz".into(),
        request: Request {
            method: "GET".into(),
            path: "/fuzz".into(),
            query: Some(format!(
                "page=2&access_token={}&Token={}",
                g.secret(),
                g.secret()
            )),
            headers: req_headers,
            body: bytes::Bytes::new(),
        },
        primary: response(p_body, true, &format!("Bearer {}", g.secret())),
        candidate: Ok(response(
            c_body,
            candidate_json,
            &format!("Bearer {}", g.secret()),
        )),
        secondary: None,
        sends: None,
    };
    let cfg: RedactConfig =
        serde_yaml_ng::from_str(PATHS).map_err(|e| format!("the property's config: {e}"))?;
    let r = Redaction::from_config(&cfg, max);
    let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
    let v = cmp.compare(&ex);
    let line = Event::build(&ex, &v, "fuzz", &r).to_json_line();
    if let Some(i) = line.find('Q') {
        let from = line.floor_char_boundary(i.saturating_sub(120));
        let to = line.floor_char_boundary((i + 120).min(line.len()));
        return Err(format!(
            "a piece of a secret leaked: …{}…\nprimary: {}\ncandidate: {}",
            &line[from..to],
            String::from_utf8_lossy(&ex.primary.body),
            ex.candidate
                .as_ref()
                .map(|c| String::from_utf8_lossy(&c.body).into_owned())
                .unwrap_or_default()
        ));
    }
    if line.contains(CARD) || line.contains(CARD_DIGITS) {
        return Err(format!("a card number leaked: {line}"));
    }
    Ok(Exercised {
        planted: g.planted,
        differences: v.differences.len(),
        body_differences: v
            .differences
            .iter()
            .filter(|d| d.kind == crate::compare::DiffKind::Body)
            .count(),
    })
}
