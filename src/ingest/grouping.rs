//! Endpoint grouping: which `METHOD /template` an exchange is counted under. Templates from the
//! rules' `endpoints:` win; otherwise identifiers in the path become `{id}`. The number of
//! automatic endpoints is capped so metric labels and per-endpoint statistics stay bounded.
//!
//! The cap is one number for the whole sidecar, `grouping.max_endpoints`: the grouper names at
//! most that many automatic endpoints and groups the rest as [`OTHER`]; the statistics'
//! [`crate::stats::EndpointMap`] keeps that many endpoints on their own with `OTHER` on top, so
//! it never folds an endpoint the grouping kept.

use crate::compare::rules::RuleSet;
use parking_lot::RwLock;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;

/// What endpoints beyond the cap are grouped as: the statistics' `OTHER`, the same constant.
pub use crate::stats::OTHER_ENDPOINT as OTHER;

/// `grouping:` in `shadowdiff.yaml` — how requests are grouped into endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupingConfig {
    /// Distinct automatic endpoints at most; new ones beyond are grouped as `OTHER`, so metric
    /// labels stay bounded. The statistics and the noise model are capped by the same number.
    /// Default `200`.
    #[serde(deserialize_with = "crate::units::de::positive")]
    pub max_endpoints: usize,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        Self {
            max_endpoints: crate::stats::DEFAULT_MAX_ENDPOINTS,
        }
    }
}

#[derive(Debug)]
pub struct Grouper {
    rules: Arc<RuleSet>,
    max: usize,
    seen: RwLock<HashSet<Arc<str>>>,
}

impl Grouper {
    pub fn new(rules: Arc<RuleSet>, max_endpoints: usize) -> Self {
        Self {
            rules,
            max: max_endpoints,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// The endpoint of a request; `path` is without the query string.
    pub fn endpoint(&self, method: &str, path: &str) -> Arc<str> {
        if let Some(t) = self.rules.endpoint_for(method, path) {
            // Rule templates are written by the user: bounded by the rules file, not counted.
            return Arc::from(t);
        }
        let auto = format!("{} {}", method, template(path));
        // Hot path: almost every request is an endpoint already seen, a shared read lock.
        {
            let seen = self.seen.read();
            if let Some(e) = seen.get(auto.as_str()) {
                return e.clone();
            }
            if seen.len() >= self.max {
                return Arc::from(OTHER);
            }
        }
        let mut seen = self.seen.write();
        if let Some(e) = seen.get(auto.as_str()) {
            return e.clone();
        }
        if seen.len() >= self.max {
            return Arc::from(OTHER);
        }
        let e: Arc<str> = Arc::from(auto);
        seen.insert(e.clone());
        e
    }

    /// Automatic endpoints seen so far (at most the cap).
    pub fn len(&self) -> usize {
        self.seen.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `/orders/42/items/9f3b2c1d` → `/orders/{id}/items/{id}`.
pub fn template(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_identifier(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    out
}

/// Numeric, UUID, hex of 8+ characters, or a long (16+) opaque token mixing letters and digits.
fn is_identifier(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let b = seg.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    if b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit) {
        return true;
    }
    b.len() >= 16
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~'))
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identifiers_become_id() {
        assert_eq!(template("/orders/42"), "/orders/{id}");
        assert_eq!(
            template("/u/123e4567-e89b-12d3-a456-426614174000/x"),
            "/u/{id}/x"
        );
        assert_eq!(template("/blob/deadbeef42"), "/blob/{id}");
        assert_eq!(template("/t/aZ3kd93LkdP02mQx"), "/t/{id}");
        assert_eq!(template("/"), "/");
        assert_eq!(template(""), "/");
    }

    #[test]
    fn words_stay() {
        assert_eq!(template("/orders/search"), "/orders/search");
        // Short hex-looking words and all-letter hex are words, not ids.
        assert_eq!(template("/cafe/deadbeef/abc123"), "/cafe/deadbeef/abc123");
        assert_eq!(template("/v2/users"), "/v2/users");
        assert_eq!(
            template("/docs/getting-started-guide"),
            "/docs/getting-started-guide"
        );
    }

    #[test]
    fn rules_templates_win() {
        let rules = RuleSet::from_yaml("version: 1\nendpoints: [\"GET /orders/{id}/lines/{n}\"]\n")
            .unwrap();
        let g = Grouper::new(Arc::new(rules), 10);
        assert_eq!(
            &*g.endpoint("GET", "/orders/abc/lines/x"),
            "GET /orders/{id}/lines/{n}"
        );
        assert_eq!(&*g.endpoint("POST", "/orders/7"), "POST /orders/{id}");
    }

    #[test]
    fn capped_at_max_endpoints() {
        let g = Grouper::new(Arc::new(RuleSet::default()), 2);
        assert_eq!(&*g.endpoint("GET", "/a/1"), "GET /a/{id}");
        assert_eq!(&*g.endpoint("GET", "/b"), "GET /b");
        assert_eq!(&*g.endpoint("GET", "/c"), OTHER);
        // Known ones still resolve after the cap is reached.
        assert_eq!(&*g.endpoint("GET", "/a/2"), "GET /a/{id}");
        assert_eq!(g.len(), 2);
    }
}
