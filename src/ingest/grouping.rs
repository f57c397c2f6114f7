//! Endpoint grouping: which `METHOD /template` an exchange is counted under. Templates from the
//! rules' `endpoints:` win; otherwise identifiers in the path become `{id}`. The number of
//! automatic endpoints is capped so metric labels and per-endpoint statistics stay bounded.
//!
//! The cap is one number for the whole sidecar, `grouping.max_endpoints`: the grouper names at
//! most that many automatic endpoints and groups the rest as [`OTHER`]; the statistics'
//! [`crate::stats::EndpointMap`] keeps that many endpoints on their own with `OTHER` on top, so
//! it never folds an endpoint the grouping kept.
//!
//! An endpoint name is published everywhere: `/api/v1/summary`, the `endpoint` label of
//! `/metrics`, the Kafka message keys and statistics, the events, the logs. So an automatic name
//! is redacted here, once, as every published string is ([`Redaction::text`]): a path segment
//! that templating keeps (an e-mail address, a card number written with dashes, a percent-encoded
//! bearer token, a `;token=` matrix parameter) becomes `<redacted:KIND>`. The cap counts the
//! redacted names: `/users/a@x.com` and `/users/b@y.org` are one endpoint,
//! `GET /users/<redacted:email>`. Templates the rules name (`endpoints:`) are the operator's
//! words, published as written.

use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions};
use crate::pipeline::Stage;
use crate::redact::Redaction;
use arc_swap::ArcSwap;
use parking_lot::RwLock;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
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

/// Raw automatic names longer than this are not remembered (a hostile 60 KiB path would pin
/// its bytes); they are redacted again on each request.
const CACHE_KEY_MAX: usize = 1024;

pub struct Grouper {
    /// The rules (their `endpoints:`) and the redaction come from the pipeline's stage, so a
    /// reload renames from the next request on.
    stage: Arc<ArcSwap<Stage>>,
    max: usize,
    names: RwLock<Names>,
}

#[derive(Debug, Default)]
struct Names {
    /// Raw automatic name (`METHOD /template`) → the name published for it (or [`OTHER`]), so a
    /// known endpoint costs one lookup, not a redaction. At most `4 × max` entries.
    by_raw: HashMap<Box<str>, Arc<str>>,
    /// Distinct published names: what `max_endpoints` caps. Kept across reloads: the
    /// statistics keep counting the endpoints they already have.
    published: HashSet<Arc<str>>,
    /// The stage generation `by_raw` was filled under; another one (a reload may have changed
    /// the redaction) empties it.
    generation: u64,
}

impl Grouper {
    /// A grouper on fixed rules and redaction (tests, embedders).
    pub fn new(rules: Arc<RuleSet>, max_endpoints: usize, redaction: Redaction) -> Self {
        let stage = Stage::new(Comparator::new(rules, CompareOptions::default()), redaction);
        Self::live(Arc::new(ArcSwap::from_pointee(stage)), max_endpoints)
    }

    /// A grouper on the pipeline's stage ([`crate::pipeline::Pipeline::stages`]): its rules'
    /// templates and its redaction, the one events are published through, as reloaded.
    pub fn live(stage: Arc<ArcSwap<Stage>>, max_endpoints: usize) -> Self {
        Self {
            stage,
            max: max_endpoints,
            names: RwLock::new(Names::default()),
        }
    }

    /// The endpoint of a request; `path` is without the query string.
    pub fn endpoint(&self, method: &str, path: &str) -> Arc<str> {
        let stage = self.stage.load();
        if let Some(t) = stage.comparator.rules().endpoint_for(method, path) {
            // Rule templates are written by the user: bounded by the rules file, not counted.
            return Arc::from(t);
        }
        let auto = format!("{} {}", method, template(path));
        // Hot path: almost every request is an endpoint already seen, a shared read lock.
        {
            let names = self.names.read();
            if names.generation == stage.generation
                && let Some(e) = names.by_raw.get(auto.as_str())
            {
                return e.clone();
            }
        }
        // Redacted outside the lock: the regexes cost microseconds on a long path.
        let name = stage.redaction.text(&auto);
        let mut names = self.names.write();
        if names.generation != stage.generation {
            names.by_raw.clear();
            names.generation = stage.generation;
        }
        if let Some(e) = names.by_raw.get(auto.as_str()) {
            return e.clone();
        }
        let e: Arc<str> = match names.published.get(name.as_str()) {
            Some(e) => e.clone(),
            None if names.published.len() >= self.max => Arc::from(OTHER),
            None => {
                let e: Arc<str> = Arc::from(name);
                names.published.insert(e.clone());
                e
            }
        };
        if auto.len() <= CACHE_KEY_MAX && names.by_raw.len() < self.max.saturating_mul(4) {
            names.by_raw.insert(auto.into_boxed_str(), e.clone());
        }
        e
    }

    /// Automatic endpoints named so far (at most the cap).
    pub fn len(&self) -> usize {
        self.names.read().published.len()
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
        let g = Grouper::new(Arc::new(rules), 10, Redaction::default());
        assert_eq!(
            &*g.endpoint("GET", "/orders/abc/lines/x"),
            "GET /orders/{id}/lines/{n}"
        );
        assert_eq!(&*g.endpoint("POST", "/orders/7"), "POST /orders/{id}");
    }

    #[test]
    fn personal_data_left_in_a_path_by_templating_is_redacted_in_the_name() {
        let g = Grouper::new(Arc::new(RuleSet::default()), 50, Redaction::default());
        for (path, name) in [
            (
                "/users/ann@example.com/cards",
                "GET /users/<redacted:email>/cards",
            ),
            // Decoded before the detectors look: the published name is the decoded form.
            ("/users/ann%40example.com", "GET /users/<redacted:email>"),
            ("/cards/4111-1111-1111-1111", "GET /cards/<redacted:card>"),
            ("/cards/4111111111111111", "GET /cards/{id}"),
            // A bearer token may hold `/` (RFC 6750): the rest of the path goes with it.
            (
                "/auth/Bearer%20abcdefXYZ/x",
                "GET /auth/Bearer <redacted:bearer>",
            ),
            // A bare JWT segment is an identifier already; one that is not a whole segment is not.
            (
                "/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
                "GET /t/{id}",
            ),
            (
                "/t/jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
                "GET /t/jwt=<redacted:bearer>",
            ),
            ("/files;token=abc/x", "GET /files;token=<redacted>"),
            ("/orders/search", "GET /orders/search"),
        ] {
            assert_eq!(&*g.endpoint("GET", path), name, "{path}");
        }
    }

    #[test]
    fn the_cap_counts_published_names() {
        let g = Grouper::new(Arc::new(RuleSet::default()), 2, Redaction::default());
        // Two addresses, one endpoint: the cap is not used up by personal data.
        assert_eq!(
            &*g.endpoint("GET", "/u/ann@example.com"),
            "GET /u/<redacted:email>"
        );
        assert_eq!(
            &*g.endpoint("GET", "/u/bob@example.org"),
            "GET /u/<redacted:email>"
        );
        assert_eq!(g.len(), 1);
        assert_eq!(&*g.endpoint("GET", "/v"), "GET /v");
        assert_eq!(
            &*g.endpoint("GET", "/u/cy@example.net"),
            "GET /u/<redacted:email>"
        );
        assert_eq!(&*g.endpoint("GET", "/w"), OTHER);
        assert_eq!(&*g.endpoint("GET", "/w"), OTHER, "remembered as OTHER");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn the_raw_name_cache_is_bounded_in_entries_and_key_length() {
        let g = Grouper::new(Arc::new(RuleSet::default()), 2, Redaction::default());
        for i in 0..100 {
            g.endpoint("GET", &format!("/u/user{i}@example.com"));
        }
        assert_eq!(g.names.read().by_raw.len(), 8, "4 × max_endpoints");
        let long = format!("/x/{}", "a".repeat(CACHE_KEY_MAX));
        let g = Grouper::new(Arc::new(RuleSet::default()), 2, Redaction::default());
        assert_eq!(&*g.endpoint("GET", &long), &*format!("GET {long}"));
        assert_eq!(&*g.endpoint("GET", &long), &*format!("GET {long}"));
        assert!(g.names.read().by_raw.is_empty());
        assert_eq!(g.len(), 1);
    }

    /// A reload that changes the redaction renames from the next request on: names cached under
    /// the old stage are not served under the new one.
    #[test]
    fn a_new_stage_empties_the_name_cache() {
        let redacting = Stage::new(
            Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default()),
            Redaction::default(),
        );
        let slot = Arc::new(ArcSwap::from_pointee(redacting));
        let g = Grouper::live(slot.clone(), 10);
        assert_eq!(
            &*g.endpoint("GET", "/u/ann@example.com"),
            "GET /u/<redacted:email>"
        );
        let cfg = crate::redact::RedactConfig {
            patterns: Vec::new(),
            ..Default::default()
        };
        slot.store(Arc::new(Stage {
            generation: 1,
            ..Stage::new(
                Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default()),
                Redaction::from_config(&cfg, 1024),
            )
        }));
        assert_eq!(
            &*g.endpoint("GET", "/u/ann@example.com"),
            "GET /u/ann@example.com"
        );
    }

    #[test]
    fn capped_at_max_endpoints() {
        let g = Grouper::new(Arc::new(RuleSet::default()), 2, Redaction::default());
        assert_eq!(&*g.endpoint("GET", "/a/1"), "GET /a/{id}");
        assert_eq!(&*g.endpoint("GET", "/b"), "GET /b");
        assert_eq!(&*g.endpoint("GET", "/c"), OTHER);
        // Known ones still resolve after the cap is reached.
        assert_eq!(&*g.endpoint("GET", "/a/2"), "GET /a/{id}");
        assert_eq!(g.len(), 2);
    }
}
