//! Redaction: everything that makes a published string safe (DESIGN.md, "Config file",
//! `redact:`). [`crate::event::Event::build`] passes every field of an event through a
//! [`Redaction`]; nothing else publishes traffic. What is hidden, where:
//!
//! - **Header values** named in `redact.headers`, and always `authorization`, `cookie`,
//!   `set-cookie` and `proxy-authorization`, become `<redacted>`: in header maps, in `@headers/…`
//!   differences, in JSON bodies where such a name is the key of a string (an echo service's
//!   `{"headers": {"Cookie": "…"}}`), and in text where such a name starts a line
//!   (`Cookie: …`, a `TRACE` echo or a raw HTTP message; a diff sign before it counts).
//! - **JSON paths** (`redact.paths`, rules syntax with `*` and `**`) become `<redacted>` in
//!   bodies and in *every difference that contains them*: a difference at the path or beneath it
//!   hides both values (and the path below the redacted node); a difference on a parent — a
//!   missing or added object, a type change, an array reordered — has the redacted paths masked
//!   inside its values, found by the same matcher from the difference's own path.
//! - **Text bodies next to JSON.** A `body` (line) difference is never published from the raw
//!   bytes: each side is re-rendered first — a JSON side parsed, masked and pretty-printed, a
//!   text side with its JSON lines masked (NDJSON) — and the line diff is computed again on the
//!   renderings. Parsing is the approach that cannot leak: raw JSON may spell a value with
//!   escapes (`"\u0073ecret"`) that no search for the value finds. A text side (or a string
//!   inside JSON) that still mentions a redacted key as a field (`"token":`, `token=`, or
//!   `token:` at a line start — broken or embedded JSON, a form, YAML) is withheld whole:
//!   without structure there is no telling where its value ends.
//! - **Query parameters** named in `redact.query`, and always `access_token`, `token`,
//!   `api_key`, `apikey`, `password`, `secret`, `signature` and `code` (names compared
//!   case-insensitively, after percent-decoding) keep their name and lose their value
//!   (`token=<redacted>`): in the request's query, in form-encoded bodies, and in any string
//!   where a `?`, `&` or `;` introduces one (a `Location` header, a link in a body).
//! - **Patterns** (`redact.patterns`, default `[email, card, bearer]`, `[]` turns them off) run
//!   over every published string — bodies, excerpts, difference values, paths, query strings,
//!   header values, notes, object keys — and over its percent-decoded form (`a%40b.com`). Card
//!   numbers written as JSON numbers are caught too.
//! - **Size.** Every published value is capped at `publish.max_body_bytes`: a longer string, or
//!   a number, array or object whose JSON text is longer, is published as a string holding its
//!   first `max_body_bytes` bytes and the marker `… <truncated: N bytes>` (N the full length).
//!   Capping comes after redaction, so a cut can never split a secret out of its detector.
//! - **Names published outside events.** Endpoint names are made redacted by the grouper
//!   (`ingest::grouping`, through [`Redaction::text`]); the paths and fields of differences,
//!   which statistics, the noise model and Kafka count by, get their published form in the
//!   comparison workers ([`Redaction::name_differences`], `names.rs`). Errors that quote an
//!   upstream's bytes are published and logged through [`Redaction::quoted`].

mod body;
mod detect;
mod names;
#[cfg(test)]
mod tests;

pub use body::RecordedBody;
pub use detect::{BEARER, CARD, Detector, EMAIL};
pub use names::RawNames;

use crate::compare::pattern::{Cursor, PathPattern, PathSeg, Seg};
use crate::compare::rules::RuleSet;
use crate::compare::{ALWAYS_REDACTED, Comparator, CompareOptions, DiffKind, Difference, REDACTED};
use crate::exchange::Exchange;
use detect::Detectors;
use http::HeaderName;
use names::Walk;
use regex::Regex;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Query parameters whose values are never published, whatever `redact.query` says.
pub const ALWAYS_REDACTED_QUERY: &[&str] = &[
    "access_token",
    "token",
    "api_key",
    "apikey",
    "password",
    "secret",
    "signature",
    "code",
];

/// `redact:` — what is never published. Some things are redacted whatever this says: see the
/// module documentation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Header names whose values are never published. Default `[authorization, cookie,
    /// set-cookie, proxy-authorization]`, which are redacted even when left out.
    #[serde(deserialize_with = "crate::units::de::header_names")]
    pub headers: Vec<HeaderName>,
    /// JSON paths (rules syntax, `*` and `**`) whose values are never published, in bodies and
    /// in every difference that contains them. Default none.
    #[serde(deserialize_with = "crate::units::de::path_patterns")]
    pub paths: Vec<PathPattern>,
    /// Query parameter names whose values are never published (case-insensitive), on top of
    /// [`ALWAYS_REDACTED_QUERY`]. Default none.
    #[serde(deserialize_with = "query_names")]
    pub query: Vec<String>,
    /// Built-in detectors run over every published string: `email`, `card`, `bearer`.
    /// Default all three; `[]` turns them off.
    pub patterns: Vec<Detector>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            headers: ALWAYS_REDACTED
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            paths: Vec::new(),
            query: Vec::new(),
            patterns: Detector::ALL.to_vec(),
        }
    }
}

fn query_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| {
            let n = s.trim().to_ascii_lowercase();
            if n.is_empty() || n.contains(['=', '&', ';', '#', '?']) {
                Err(D::Error::custom(format!(
                    "invalid query parameter name {s:?}"
                )))
            } else {
                Ok(n)
            }
        })
        .collect()
}

/// Bodies larger than this, decoded, are not re-rendered for publishing (a placeholder is):
/// `max_body_bytes × 64`, at least 1 MiB.
fn decode_limit(max_bytes: usize) -> usize {
    max_bytes.saturating_mul(64).max(1 << 20)
}

/// What is never published, and how much of anything is: built once from [`RedactConfig`] and
/// `publish.max_body_bytes`, then shared by the comparison workers.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Lower-cased header names whose values are hidden; always includes [`ALWAYS_REDACTED`].
    headers: Vec<String>,
    paths: Vec<PathPattern>,
    /// Lower-cased query parameter names whose values are hidden.
    query: Vec<String>,
    detectors: Detectors,
    max_bytes: usize,
    /// `^Name:` lines of hidden headers, and `"name": "…"` pairs in JSON-like text.
    header_lines: Option<Regex>,
    /// A redacted path's key mentioned as a field in text (see the module documentation).
    /// `None` with no paths.
    mentions: Option<Regex>,
    /// Some redacted path has no key at all (`/**`, `/*`, ``): every non-JSON text body is
    /// withheld.
    withhold_all_text: bool,
    /// Set when a configured regex failed to build: every string is then withheld (fail closed).
    broken: bool,
    /// Re-diffs re-rendered bodies (no rules: rules never apply to text).
    text_diff: Arc<Comparator>,
}

impl Default for Redaction {
    fn default() -> Self {
        Self::from_config(&RedactConfig::default(), 16 << 10)
    }
}

/// `[?&;]name=value` in any text: a query string or a form, wherever it appears.
static QUERY_PAIR: std::sync::LazyLock<Option<Regex>> = std::sync::LazyLock::new(|| {
    Regex::new(r#"([?&;])([^=&;#\s?"'<>]{1,256})=([^&;#\s"'<>]*)"#).ok()
});

impl Redaction {
    pub fn from_config(cfg: &RedactConfig, max_body_bytes: usize) -> Self {
        detect::compile_now();
        std::sync::LazyLock::force(&QUERY_PAIR);
        let mut headers: Vec<String> = ALWAYS_REDACTED.iter().map(|s| s.to_string()).collect();
        for h in &cfg.headers {
            let h = h.as_str().to_ascii_lowercase();
            if !headers.contains(&h) {
                headers.push(h);
            }
        }
        let mut query: Vec<String> = ALWAYS_REDACTED_QUERY
            .iter()
            .map(|s| s.to_string())
            .collect();
        for q in &cfg.query {
            let q = q.to_ascii_lowercase();
            if !query.contains(&q) {
                query.push(q);
            }
        }
        let alt = |names: &[String]| {
            names
                .iter()
                .map(|n| regex::escape(n))
                .collect::<Vec<_>>()
                .join("|")
        };
        let header_lines = Regex::new(&format!(
            r#"(?im)^([ \t+\-]*(?:{h})[ \t]*:)[^\r\n]*|("(?:{h})"[ \t]*:[ \t]*)"(?:[^"\\]|\\.)*""#,
            h = alt(&headers)
        ))
        .ok();
        let mut keys: Vec<String> = Vec::new();
        let mut withhold_all_text = false;
        for p in &cfg.paths {
            let key = p.segs().iter().rev().find_map(|s| match s {
                Seg::Lit(k) if !k.bytes().all(|b| b.is_ascii_digit()) => Some(k.clone()),
                _ => None,
            });
            match key {
                Some(k) if !keys.contains(&k) => keys.push(k),
                Some(_) => {}
                None => withhold_all_text = true,
            }
        }
        let mentions = (!keys.is_empty()).then(|| {
            let k = alt(&keys);
            Regex::new(&format!(
                r#"(?im)"(?:{k})\\?"\s*:|(?:^|[^A-Za-z0-9_])(?:{k})\s*=|^[ \t+\-]*(?:{k})[ \t]*:"#
            ))
            .ok()
        });
        let broken = header_lines.is_none() || matches!(mentions, Some(None));
        if broken {
            tracing::error!(
                "redaction: a pattern built from redact.headers or redact.paths did not \
                 compile; every published string is withheld"
            );
        }
        Self {
            headers,
            paths: cfg.paths.clone(),
            query,
            detectors: Detectors::new(&cfg.patterns),
            max_bytes: max_body_bytes,
            header_lines,
            mentions: mentions.flatten(),
            withhold_all_text,
            broken,
            text_diff: Arc::new(Comparator::new(
                Arc::new(RuleSet::default()),
                CompareOptions::default(),
            )),
        }
    }

    /// The cap on every published value (`publish.max_body_bytes`).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    // ----- strings -----

    /// Any published string taken from traffic: scrubbed, then capped.
    pub fn text(&self, s: &str) -> String {
        cap_str(&self.scrub(s), self.max_bytes)
    }

    /// A query string (without `?`): redacted parameters lose their value, then [`Self::text`].
    pub fn query(&self, q: &str) -> String {
        self.text(&self.query_pairs(q))
    }

    /// Header values as published: hidden names as `<redacted>`, the rest scrubbed and capped;
    /// repeated headers joined with `, `.
    pub fn headers(&self, map: &http::HeaderMap) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for name in map.keys() {
            let n = name.as_str();
            let v = if self.hides_header(n) {
                REDACTED.to_string()
            } else {
                let joined = map
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.text(&joined)
            };
            out.insert(self.text(n), v);
        }
        out
    }

    /// One header value as published: `<redacted>` for a hidden name, else [`Self::text`].
    pub fn header_value(&self, name: &str, value: &str) -> String {
        if self.hides_header(name) {
            REDACTED.to_string()
        } else {
            self.text(value)
        }
    }

    fn hides_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Query names, header lines, then the detectors, over `s` and over its percent-decoded
    /// form; when decoding reveals something, the decoded, scrubbed form is what is published.
    fn scrub<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if self.broken {
            return Cow::Borrowed(REDACTED);
        }
        let out = self.scrub_raw(s);
        if !s.contains('%') {
            return out;
        }
        // Up to three levels of encoding (`%2540` is `%40` is `@`).
        let mut decoded = s.to_string();
        for _ in 0..3 {
            let next = percent_encoding::percent_decode_str(&decoded)
                .decode_utf8_lossy()
                .into_owned();
            if next == decoded {
                break;
            }
            decoded = next;
            let scrubbed = self.scrub_raw(&decoded);
            if scrubbed != decoded {
                return Cow::Owned(scrubbed.into_owned());
            }
        }
        out
    }

    fn scrub_raw<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        if s.contains('=') {
            out = self.query_in_text(out);
        }
        if s.contains(':')
            && let Some(re) = &self.header_lines
            && let Cow::Owned(o) = re.replace_all(&out, |c: &regex::Captures<'_>| match c.get(1) {
                Some(line) => format!("{} {REDACTED}", line.as_str()),
                None => format!(
                    "{}\"{REDACTED}\"",
                    c.get(2).map(|m| m.as_str()).unwrap_or("")
                ),
            })
        {
            out = Cow::Owned(o);
        }
        match self.detectors.apply(&out) {
            Cow::Borrowed(_) => out,
            Cow::Owned(o) => Cow::Owned(o),
        }
    }

    /// `[?&;]name=value` anywhere in `s`: a hidden name keeps its name, loses its value.
    fn query_in_text<'a>(&self, s: Cow<'a, str>) -> Cow<'a, str> {
        let Some(re) = QUERY_PAIR.as_ref() else {
            return Cow::Owned(REDACTED.to_string());
        };
        let rep = |c: &regex::Captures<'_>| {
            let (sep, name, value) = (&c[1], &c[2], &c[3]);
            if !value.is_empty() && self.hides_query(name) {
                format!("{sep}{name}={REDACTED}")
            } else {
                c[0].to_string()
            }
        };
        match s {
            Cow::Borrowed(b) => re.replace_all(b, rep),
            Cow::Owned(o) => match re.replace_all(&o, rep) {
                Cow::Borrowed(_) => Cow::Owned(o),
                Cow::Owned(n) => Cow::Owned(n),
            },
        }
    }

    /// A whole query string or form body (pairs separated by `&` or `;`, no leading `?`).
    fn query_pairs(&self, q: &str) -> String {
        let mut out = String::with_capacity(q.len());
        let mut rest = q;
        loop {
            let end = rest.find(['&', ';']).unwrap_or(rest.len());
            let pair = &rest[..end];
            match pair.split_once('=') {
                Some((name, value)) if !value.is_empty() && self.hides_query(name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
            if end == rest.len() {
                return out;
            }
            out.push_str(&rest[end..end + 1]);
            rest = &rest[end + 1..];
        }
    }

    fn hides_query(&self, raw_name: &str) -> bool {
        let plus = raw_name.replace('+', " ");
        let name = percent_encoding::percent_decode_str(&plus).decode_utf8_lossy();
        let name = name.trim();
        self.query.iter().any(|q| q.eq_ignore_ascii_case(name))
    }

    /// Whether raw text mentions a redacted path's key as a field.
    fn mentions_redacted_key(&self, s: &str) -> bool {
        self.mentions.as_ref().is_some_and(|re| re.is_match(s))
    }

    // ----- JSON -----

    /// Masks redacted paths and hidden-header keys inside `v` (whose own path the cursor
    /// stands at) and scrubs every string, key and card-like number in it. Not capped.
    fn json(&self, v: &mut Value, cur: &Cursor) {
        if cur.accepted(&self.paths).next().is_some() {
            *v = Value::String(REDACTED.into());
            return;
        }
        match v {
            Value::Object(m) => {
                let old = std::mem::take(m);
                for (k, mut child) in old {
                    if child.is_string() && self.hides_header(&k) {
                        child = Value::String(REDACTED.into());
                    } else {
                        self.json(&mut child, &cur.step(&self.paths, PathSeg::Key(&k)));
                    }
                    let mut key = self.text(&k);
                    // Two keys may scrub to the same text (two addresses): keep both.
                    let mut n = 2;
                    while m.contains_key(&key) {
                        key = format!("{} ({n})", self.text(&k));
                        n += 1;
                    }
                    m.insert(key, child);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter_mut().enumerate() {
                    self.json(child, &cur.step(&self.paths, PathSeg::Index(i)));
                }
            }
            Value::String(s) => {
                if self.mentions_redacted_key(s) {
                    *s = withheld(s.len());
                } else if let Cow::Owned(o) = self.scrub(s) {
                    *s = o;
                }
            }
            Value::Number(n) if self.detectors.number_is_card(n.as_str()) => {
                *v = Value::String(CARD.into());
            }
            _ => {}
        }
    }

    /// A whole JSON document from traffic, masked and scrubbed.
    fn json_doc(&self, v: &mut Value) {
        self.json(v, &Cursor::start(&self.paths));
    }

    /// A published JSON value: masked and scrubbed by the caller; capped here.
    fn cap_value(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(cap_str(&s, self.max_bytes)),
            Value::Null | Value::Bool(_) => v,
            Value::Number(ref n) if n.as_str().len() <= self.max_bytes => v,
            other => {
                let text = other.to_string();
                if text.len() <= self.max_bytes {
                    other
                } else {
                    Value::String(cap_str(&text, self.max_bytes))
                }
            }
        }
    }

    // ----- differences -----

    /// The differences as published. `body` (line) differences are computed again from
    /// redacted renderings of the two bodies (see the module documentation); every other
    /// difference is redacted in place.
    pub fn differences(&self, ex: &Exchange, diffs: &[Difference]) -> Vec<Difference> {
        let mut out = Vec::with_capacity(diffs.len());
        let mut body_done = false;
        for d in diffs {
            if d.kind == DiffKind::Body {
                if !body_done {
                    body_done = true;
                    let noise = diffs
                        .iter()
                        .filter(|d| d.kind == DiffKind::Body)
                        .all(|d| d.noise);
                    out.extend(self.body_differences(ex, diffs, noise));
                }
                continue;
            }
            out.push(self.difference(d));
        }
        out
    }

    /// One non-body difference as published.
    pub fn difference(&self, d: &Difference) -> Difference {
        let mut out = Difference {
            path: self.text(&d.path),
            field: self.text(&d.field),
            kind: d.kind,
            primary: Value::Null,
            candidate: Value::Null,
            noise: d.noise,
            detail: d.detail.as_deref().map(|s| self.text(s)),
        };
        let hide = |v: &Value| match v {
            Value::Null => Value::Null,
            _ => Value::String(REDACTED.into()),
        };
        if d.path == "@status" {
            out.primary = self.cap_value(d.primary.clone());
            out.candidate = self.cap_value(d.candidate.clone());
            return out;
        }
        if let Some(name) = d.path.strip_prefix("@headers/") {
            if self.hides_header(name) {
                out.primary = hide(&d.primary);
                out.candidate = hide(&d.candidate);
                out.detail = None;
            } else {
                out.primary = self.scrubbed_value(d.primary.clone(), &Cursor::default());
                out.candidate = self.scrubbed_value(d.candidate.clone(), &Cursor::default());
            }
            return out;
        }
        // A body pointer: a redacted path on the way hides the whole difference; otherwise the
        // matcher, standing at the difference's node, masks what lies beneath inside both values.
        let cur = match self.walk(&d.path) {
            Walk::Hidden { below } => {
                out.primary = hide(&d.primary);
                out.candidate = hide(&d.candidate);
                out.detail = None;
                if let Some(n) = below {
                    out.path = self.text(&below_redacted(&d.path, n));
                    out.field = self.text(&below_redacted(&d.field, n));
                }
                return out;
            }
            Walk::Open(cur) => cur,
        };
        out.primary = self.scrubbed_value(d.primary.clone(), &cur);
        out.candidate = self.scrubbed_value(d.candidate.clone(), &cur);
        out
    }

    fn scrubbed_value(&self, mut v: Value, cur: &Cursor) -> Value {
        self.json(&mut v, cur);
        self.cap_value(v)
    }
}

/// `pointer` cut after `n` segments, with one `<redacted>` segment standing for the rest.
fn below_redacted(pointer: &str, n: usize) -> String {
    let mut out: String = pointer
        .split('/')
        .skip(1)
        .take(n)
        .flat_map(|s| ["/", s])
        .collect();
    out.push('/');
    out.push_str(REDACTED);
    out
}

fn withheld(bytes: usize) -> String {
    format!("<withheld: {bytes} bytes mentioning a redacted field>")
}

/// `s` if it fits in `max` bytes, else its first `max` bytes (on a character boundary) and
/// `… <truncated: N bytes>`.
pub fn cap_str(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!(
        "{}… <truncated: {} bytes>",
        &s[..s.floor_char_boundary(max)],
        s.len()
    )
}
