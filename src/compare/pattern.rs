//! Path patterns (JSON Pointers with `*` and `**`) and endpoint patterns (`METHOD /path/{param}`).
//!
//! Path patterns are matched *during* the tree walk with a tiny NFA ([`Cursor`]) rather than by
//! rendering every visited path to a string: most nodes of most bodies match no rule, and the walk
//! must stay within a few percent of parsing time (see `benches/compare.rs`).

use smallvec::SmallVec;
use std::fmt;

/// One segment of a compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A literal key (already unescaped from `~0`/`~1`); also matches an array index written in decimal.
    Lit(String),
    /// `*`: exactly one key or index.
    Star,
    /// `**`: zero or more segments.
    DoubleStar,
}

/// A compiled JSON Pointer pattern such as `/items/*/price` or `/**/trace_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segs: Vec<Seg>,
}

/// Why a pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("JSON Pointer must be empty or start with '/': {0:?}")]
    NoLeadingSlash(String),
    #[error("invalid escape in {0:?}: '~' must be followed by '0' or '1' (RFC 6901)")]
    BadEscape(String),
    #[error("endpoint pattern {0:?} must be \"*\" or \"METHOD /path\"")]
    BadEndpoint(String),
    #[error(
        "header name {0:?}: {1} (a header name is letters, digits and !#$%&'+-.^_`|~; `*` is a glob)"
    )]
    BadHeader(String, &'static str),
}

impl PathPattern {
    pub fn parse(src: &str) -> Result<Self, PatternError> {
        if src.is_empty() {
            return Ok(Self {
                source: String::new(),
                segs: Vec::new(),
            });
        }
        let Some(rest) = src.strip_prefix('/') else {
            return Err(PatternError::NoLeadingSlash(src.to_string()));
        };
        let mut segs = Vec::new();
        for raw in rest.split('/') {
            segs.push(match raw {
                "*" => Seg::Star,
                "**" => Seg::DoubleStar,
                other => Seg::Lit(
                    unescape(other).ok_or_else(|| PatternError::BadEscape(src.to_string()))?,
                ),
            });
        }
        Ok(Self {
            source: src.to_string(),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn segs(&self) -> &[Seg] {
        &self.segs
    }

    /// Whether this pattern matches a concrete path given as already-unescaped segments.
    /// Used outside the walk (tests, header rules); the walk uses [`Cursor`].
    pub fn matches<'a>(&self, path: impl IntoIterator<Item = PathSeg<'a>>) -> bool {
        let one = std::slice::from_ref(self);
        let mut c = Cursor::start(one);
        for s in path {
            c = c.step(one, s);
            if c.is_dead() {
                return false;
            }
        }
        c.accepted(one).next().is_some()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// RFC 6901 unescape: `~1` → `/`, `~0` → `~`. `None` on a dangling or unknown escape.
pub fn unescape(s: &str) -> Option<String> {
    if !s.contains('~') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// RFC 6901 escape of one key, appended to `out`.
pub fn escape_into(key: &str, out: &mut String) {
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// A header name in `ignore_headers`: matched case-insensitively, `*` matching any run of
/// characters (`x-b3-*`, `x-r*`; DESIGN.md, "Rules"). Header names are RFC 9110 tokens, so
/// anything else (a space, `:`, `?`, `[`) is refused rather than silently matching nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPattern {
    /// Lower-cased, as written otherwise.
    source: String,
}

impl HeaderPattern {
    pub fn parse(src: &str) -> Result<Self, PatternError> {
        let bad = |why| Err(PatternError::BadHeader(src.to_string(), why));
        if src.is_empty() {
            return bad("empty");
        }
        if let Some(c) = src.chars().find(|c| !is_tchar(*c)) {
            return bad(match c {
                '?' | '[' | ']' | '{' | '}' => "only `*` is a wildcard",
                c if c.is_whitespace() => "contains whitespace",
                ':' => "contains ':' (write the name only, not `name: value`)",
                _ => "contains a character not allowed in a header name",
            });
        }
        Ok(Self {
            source: src.to_ascii_lowercase(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether a header name (lower-case, as `http` gives it) matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.source.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let mut parts: Vec<&str> = parts.collect();
        let Some(last) = parts.pop() else {
            // No `*`: the whole name.
            return rest.is_empty();
        };
        for p in parts {
            match rest.find(p) {
                Some(i) => rest = &rest[i + p.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// RFC 9110 §5.6.2 `tchar` (which includes `*`).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// One step of a concrete path during the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSeg<'a> {
    Key(&'a str),
    Index(usize),
}

impl PathSeg<'_> {
    fn matches_lit(self, lit: &str) -> bool {
        match self {
            PathSeg::Key(k) => k == lit,
            PathSeg::Index(i) => {
                // Compare without allocating: a canonical decimal index has no leading zeros.
                let mut buf = itoa_buf(i);
                buf.as_str() == lit
            }
        }
    }
}

/// Small stack buffer for formatting an index; avoids a heap allocation per comparison.
fn itoa_buf(mut i: usize) -> SmallString {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (i % 10) as u8;
        n += 1;
        i /= 10;
        if i == 0 {
            break;
        }
    }
    let mut s = SmallString::default();
    for d in digits[..n].iter().rev() {
        s.push(*d);
    }
    s
}

#[derive(Default)]
struct SmallString {
    buf: [u8; 20],
    len: usize,
}

impl SmallString {
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }
    fn as_str(&mut self) -> &str {
        // Only ASCII digits are ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// The set of live NFA states for a list of patterns at one node of the walk:
/// `(pattern index, position of the next segment to match)`.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    states: SmallVec<[(u16, u16); 8]>,
}

impl Cursor {
    /// States for the root path `""` over all `patterns`.
    pub fn start(patterns: &[PathPattern]) -> Self {
        let mut c = Cursor::default();
        for (i, p) in patterns.iter().enumerate() {
            c.add(i as u16, 0, p);
        }
        c
    }

    /// Adds a state and its epsilon closure (a `**` may match nothing).
    fn add(&mut self, pat: u16, pos: u16, p: &PathPattern) {
        if self.states.contains(&(pat, pos)) {
            return;
        }
        self.states.push((pat, pos));
        if let Some(Seg::DoubleStar) = p.segs.get(pos as usize) {
            self.add(pat, pos + 1, p);
        }
    }

    pub fn is_dead(&self) -> bool {
        self.states.is_empty()
    }

    /// The cursor for a child reached through `seg`.
    pub fn step(&self, patterns: &[PathPattern], seg: PathSeg<'_>) -> Cursor {
        let mut next = Cursor::default();
        for &(pat, pos) in &self.states {
            let p = &patterns[pat as usize];
            match p.segs.get(pos as usize) {
                None => {}
                Some(Seg::DoubleStar) => next.add(pat, pos, p),
                Some(Seg::Star) => next.add(pat, pos + 1, p),
                Some(Seg::Lit(l)) if seg.matches_lit(l) => next.add(pat, pos + 1, p),
                Some(Seg::Lit(_)) => {}
            }
        }
        next
    }

    /// Indices of the patterns that match the current node exactly.
    pub fn accepted<'p>(&'p self, patterns: &'p [PathPattern]) -> impl Iterator<Item = usize> + 'p {
        self.states
            .iter()
            .filter(move |&&(i, pos)| pos as usize == patterns[i as usize].segs.len())
            .map(|&(i, _)| i as usize)
    }
}

/// An endpoint pattern: `*`, or `METHOD /path/...` where the method may be `*`, a segment
/// `{name}` or `*` matches exactly one path segment and a final `**` matches the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPattern {
    source: String,
    method: Option<String>,
    /// `None`: any path.
    segs: Option<Vec<EpSeg>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EpSeg {
    Lit(String),
    Any,
    Rest,
}

impl EndpointPattern {
    /// `*`: every endpoint.
    pub fn any() -> Self {
        Self {
            source: "*".into(),
            method: None,
            segs: None,
        }
    }

    pub fn parse(src: &str) -> Result<Self, PatternError> {
        let trimmed = src.trim();
        if trimmed == "*" {
            return Ok(Self::any());
        }
        let bad = || PatternError::BadEndpoint(src.to_string());
        let (method, path) = trimmed.split_once(' ').ok_or_else(bad)?;
        let path = path.trim();
        if method.is_empty() || !path.starts_with('/') || path.contains(' ') {
            return Err(bad());
        }
        let method = if method == "*" {
            None
        } else {
            Some(method.to_ascii_uppercase())
        };
        let mut segs = Vec::new();
        let parts: Vec<&str> = split_path(path).collect();
        for (i, part) in parts.iter().enumerate() {
            segs.push(if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(bad());
                }
                EpSeg::Rest
            } else if *part == "*" || (part.starts_with('{') && part.ends_with('}')) {
                EpSeg::Any
            } else {
                EpSeg::Lit((*part).to_string())
            });
        }
        Ok(Self {
            source: format!("{} {}", method.as_deref().unwrap_or("*"), path),
            method,
            segs: Some(segs),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether a request (or an endpoint template written as one) matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        let Some(segs) = &self.segs else { return true };
        let mut parts = split_path(path);
        for seg in segs {
            match seg {
                EpSeg::Rest => return true,
                EpSeg::Any => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                EpSeg::Lit(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Matches an endpoint written `METHOD /path` (for example the `--endpoint` flag or a template).
    pub fn matches_endpoint(&self, endpoint: &str) -> bool {
        match endpoint.trim().split_once(' ') {
            Some((m, p)) => self.matches(m, p.trim()),
            None => self.method.is_none() && self.segs.is_none(),
        }
    }
}

impl fmt::Display for EndpointPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Path segments without the query string, ignoring empty segments from doubled or trailing slashes.
pub fn split_path(path: &str) -> impl Iterator<Item = &str> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn keys(p: &[&'static str]) -> Vec<PathSeg<'static>> {
        p.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => PathSeg::Index(i),
                Err(_) => PathSeg::Key(s),
            })
            .collect()
    }

    #[test]
    fn header_globs_match_case_insensitively_and_refuse_what_is_no_header_name() {
        let h = |s: &str| HeaderPattern::parse(s).unwrap();
        assert!(h("x-r*").matches("x-request-id") && h("X-R*").matches("x-r"));
        assert!(!h("x-r*").matches("x-b3-traceid") && !h("x-r*").matches("ax-r"));
        assert!(h("x-*-id").matches("x-request-id") && !h("x-*-id").matches("x-request-ids"));
        assert!(h("*-id").matches("x-correlation-id") && h("*").matches("date"));
        assert!(
            h("a*b*c").matches("abc") && h("a*b*c").matches("a1b2c") && !h("a*b*c").matches("acb")
        );
        assert!(
            !h("a*a").matches("a"),
            "the prefix and suffix may not overlap"
        );
        assert!(h("Date").matches("date") && !h("date").matches("dates"));
        for bad in ["", "x-r?", "x r", "x-[ab]", "date:", "x/y"] {
            let e = HeaderPattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains("header name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        let p = PathPattern::parse("/items/*/price").unwrap();
        assert!(p.matches(keys(&["items", "0", "price"])));
        assert!(p.matches(keys(&["items", "x", "price"])));
        assert!(!p.matches(keys(&["items", "price"])));
        assert!(!p.matches(keys(&["items", "0", "1", "price"])));
    }

    #[test]
    fn double_star_matches_zero_or_more() {
        let p = PathPattern::parse("/**/trace_id").unwrap();
        assert!(p.matches(keys(&["trace_id"])), "** matches zero segments");
        assert!(p.matches(keys(&["a", "trace_id"])));
        assert!(p.matches(keys(&["a", "3", "b", "trace_id"])));
        assert!(!p.matches(keys(&["a", "trace_id", "x"])));
        let all = PathPattern::parse("/meta/**").unwrap();
        assert!(all.matches(keys(&["meta"])));
        assert!(all.matches(keys(&["meta", "a", "b"])));
    }

    #[test]
    fn root_pattern_and_escapes() {
        let root = PathPattern::parse("").unwrap();
        assert!(root.matches(keys(&[])));
        assert!(!root.matches(keys(&["a"])));
        let p = PathPattern::parse("/a~1b/m~0n").unwrap();
        assert!(p.matches(keys(&["a/b", "m~n"])));
        assert!(PathPattern::parse("a/b").is_err());
        assert!(PathPattern::parse("/a~2").is_err());
        assert!(PathPattern::parse("/a~").is_err());
    }

    #[test]
    fn literal_matches_decimal_index() {
        let p = PathPattern::parse("/items/10").unwrap();
        assert!(p.matches(keys(&["items", "10"])));
        assert!(!p.matches(keys(&["items", "1"])));
    }

    #[test]
    fn endpoint_patterns() {
        let p = EndpointPattern::parse("GET /orders/{id}").unwrap();
        assert!(p.matches("GET", "/orders/42"));
        assert!(p.matches("get", "/orders/42?x=1"));
        assert!(p.matches_endpoint("GET /orders/{id}"));
        assert!(!p.matches("POST", "/orders/42"));
        assert!(!p.matches("GET", "/orders/42/items"));
        assert!(!p.matches("GET", "/orders"));
        let any = EndpointPattern::parse("*").unwrap();
        assert!(any.matches("DELETE", "/x"));
        let rest = EndpointPattern::parse("* /api/**").unwrap();
        assert!(rest.matches("PUT", "/api/a/b"));
        assert!(!rest.matches("PUT", "/other"));
        assert!(EndpointPattern::parse("GET orders").is_err());
        assert!(EndpointPattern::parse("/orders").is_err());
    }
}
