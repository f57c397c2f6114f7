//! Header differences: every header compared except transport headers and the rules'
//! `ignore_headers` (names and `*` globs); values of always-redacted headers never shown.

use super::rules::Effective;
use super::{ALWAYS_REDACTED, DiffKind, Difference, REDACTED, TRANSPORT_HEADERS};
use http::HeaderMap;
use serde_json::Value;

pub(super) fn header_diffs(eff: &Effective, p: &HeaderMap, c: &HeaderMap) -> Vec<Difference> {
    let mut names: Vec<&str> = p.keys().chain(c.keys()).map(|n| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        if TRANSPORT_HEADERS.contains(&name) || eff.ignore_headers.iter().any(|h| h.matches(name)) {
            continue;
        }
        let (pv, cv) = (joined(p, name), joined(c, name));
        if pv == cv {
            continue;
        }
        let redact = ALWAYS_REDACTED.contains(&name);
        let show = |v: Option<String>| match v {
            None => Value::Null,
            Some(_) if redact => Value::String(REDACTED.into()),
            Some(s) => Value::String(s),
        };
        out.push(Difference {
            path: format!("@headers/{name}"),
            field: format!("@headers/{name}"),
            kind: DiffKind::Header,
            primary: show(pv),
            candidate: show(cv),
            noise: false,
            detail: None,
        });
    }
    out
}

fn joined(h: &HeaderMap, name: &str) -> Option<String> {
    let mut it = h.get_all(name).iter().peekable();
    it.peek()?;
    Some(
        it.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", "),
    )
}
