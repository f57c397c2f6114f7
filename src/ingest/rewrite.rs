//! How a shadow copy is changed on its way to the candidate (or the secondary):
//! `shadow.candidate` and `shadow.secondary` — a path prefix and regex rewrites of the path, the
//! query and header values, like Envoy's `prefix_rewrite`/`regex_rewrite` and GoReplay's
//! `--http-rewrite-url`/`--http-rewrite-header`. Shadows only: the primary gets the client's
//! request untouched, and published events show the request as the client sent it.
//!
//! Order: the rules in the order written (each replaces every match, `$1`/`${name}` naming
//! groups), then the prefix. A replacement's own text is checked at load to be valid where it
//! goes, and what the groups capture comes from a valid path, query or value, so a rewrite
//! cannot produce a request line or header a server would misread.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use regex::Regex;
use serde::Deserialize;
use std::borrow::Cow;

/// `shadow.candidate` / `shadow.secondary`. Default: copies go out as the client sent them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamRewrite {
    /// Put before every shadow's path, after the rewrites: `/v2` sends `/orders/1` as
    /// `/v2/orders/1`. Starts with `/`; no `?`, `#` or spaces. Default none.
    #[serde(deserialize_with = "path_prefix")]
    pub path_prefix: Option<String>,
    /// Regex rewrites, applied in order: `{in: path|query|header, name: HEADER (with
    /// header), regex, replace}`. Default none.
    pub rewrite: Vec<RewriteRule>,
}

/// One `rewrite` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct RewriteRule {
    target: Target,
    regex: Regex,
    replace: String,
}

#[derive(Debug, Clone)]
enum Target {
    Path,
    /// The query string without `?`; an absent query is rewritten as the empty one, and an
    /// empty result sends no `?`.
    Query,
    /// Every value of one header.
    Header(HeaderName),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    Path,
    Query,
    Header,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "in")]
    part: Part,
    #[serde(default)]
    name: Option<String>,
    regex: String,
    replace: String,
}

impl TryFrom<RawRule> for RewriteRule {
    type Error = String;

    fn try_from(r: RawRule) -> Result<Self, String> {
        let target = match (r.part, r.name) {
            (Part::Header, Some(n)) => Target::Header(
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("name: {n:?} is not a header name"))?,
            ),
            (Part::Header, None) => return Err("name: required with `in: header`".into()),
            (_, Some(_)) => return Err("name: only with `in: header`".into()),
            (Part::Path, None) => Target::Path,
            (Part::Query, None) => Target::Query,
        };
        let regex = Regex::new(&r.regex).map_err(|e| format!("regex: {e}"))?;
        let literal = replacement_text(&r.replace, &regex)?;
        let valid = match target {
            Target::Path => {
                format!("/{literal}")
                    .parse::<http::uri::PathAndQuery>()
                    .is_ok()
                    && !literal.contains('?')
            }
            Target::Query => format!("/?{literal}")
                .parse::<http::uri::PathAndQuery>()
                .is_ok(),
            Target::Header(_) => HeaderValue::from_str(&literal).is_ok(),
        };
        if !valid || literal.contains('#') {
            let place = match target {
                Target::Path => "a path",
                Target::Query => "a query",
                Target::Header(_) => "a header value",
            };
            return Err(format!(
                "replace: {:?} has characters not allowed in {place}",
                r.replace
            ));
        }
        Ok(RewriteRule {
            target,
            regex,
            replace: r.replace,
        })
    }
}

/// The replacement without its group references (`$1`, `${name}`; `$$` is a `$`), after
/// checking that each names a group of `regex` (`$1a` is the group `1a`, a classic slip).
fn replacement_text(replace: &str, regex: &Regex) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = replace;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, skip) = if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("replace: unclosed `${{` in {replace:?}"))?;
            (&r[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|g| g == name),
        };
        if name.is_empty() || !known {
            return Err(format!(
                "replace: ${name} names no group of the regex (write ${{1}}x for group 1 then x, $$ for a $)"
            ));
        }
        rest = &after[skip..];
    }
    out.push_str(rest);
    Ok(out)
}

fn path_prefix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(p) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let ok = p.starts_with('/')
        && !p.contains(['?', '#'])
        && p.parse::<http::uri::PathAndQuery>().is_ok();
    if !ok {
        return Err(serde::de::Error::custom(format!(
            "{p:?}: expected a path such as /v2 (starting with /, no ? or #)"
        )));
    }
    // `/v2/` and `/v2` mean the same prefix; `/` is none.
    let p = p.trim_end_matches('/');
    Ok((!p.is_empty()).then(|| p.to_string()))
}

impl UpstreamRewrite {
    /// Whether copies go out unchanged.
    pub fn is_empty(&self) -> bool {
        self.path_prefix.is_none() && self.rewrite.is_empty()
    }

    /// The origin-form target (`/path?query`) a shadow goes out with.
    pub fn path_and_query<'a>(&self, pq: &'a str) -> Cow<'a, str> {
        if self.is_empty() {
            return Cow::Borrowed(pq);
        }
        let (path, query) = match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        };
        let mut path = Cow::Borrowed(path);
        let mut query = query.map(Cow::Borrowed);
        for r in &self.rewrite {
            match &r.target {
                Target::Path => path = Cow::Owned(r.apply(&path).into_owned()),
                Target::Query => {
                    let q = r.apply(query.as_deref().unwrap_or("")).into_owned();
                    query = (!q.is_empty()).then_some(Cow::Owned(q));
                }
                Target::Header(_) => {}
            }
        }
        let mut out = String::with_capacity(pq.len() + 16);
        if let Some(p) = &self.path_prefix {
            out.push_str(p);
        }
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(&path);
        if let Some(q) = query {
            out.push('?');
            out.push_str(&q);
        }
        Cow::Owned(out)
    }

    /// Rewrites the header values the rules name, in place.
    pub fn headers(&self, h: &mut HeaderMap) {
        for r in &self.rewrite {
            let Target::Header(name) = &r.target else {
                continue;
            };
            let values: Vec<HeaderValue> = h
                .get_all(name)
                .iter()
                .map(|v| {
                    v.to_str()
                        .ok()
                        .and_then(|s| HeaderValue::from_str(&r.apply(s)).ok())
                        .unwrap_or_else(|| v.clone())
                })
                .collect();
            h.remove(name);
            for v in values {
                h.append(name.clone(), v);
            }
        }
    }
}

impl RewriteRule {
    fn apply<'a>(&self, s: &'a str) -> Cow<'a, str> {
        self.regex.replace_all(s, self.replace.as_str())
    }
}

#[cfg(test)]
mod tests;
