#![allow(clippy::unwrap_used, clippy::expect_used)]
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions, Verdict};
use crate::event::Event;
use crate::exchange::Exchange;
use crate::redact::tests::{json_ex, resp};
use crate::redact::{RedactConfig, Redaction};
use std::sync::Arc;

fn red(yaml: &str) -> Redaction {
    let cfg: RedactConfig = serde_yaml_ng::from_str(yaml).unwrap();
    Redaction::from_config(&cfg, 4096)
}

/// Two JSON answers, and a secondary's when given.
fn ex(p: &str, c: &str, s: Option<&str>) -> Exchange {
    let mut ex = json_ex(p, c);
    ex.secondary = s.map(|s| Ok(resp(s, "application/json")));
    ex
}

fn compare(ex: &Exchange) -> Verdict {
    Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default()).compare(ex)
}

const P: &str = r#"{"by_email":{"ann@example.com":1},"vault":{"vk-NAME":1},"n":1,
    "by_card":{"4111-1111-1111-1111":{"limit":1}}}"#;
const C: &str = r#"{"by_email":{"ann@example.com":2},"vault":{"vk-NAME":2},"n":2,
    "by_card":{"4111-1111-1111-1111":{"limit":2}}}"#;

#[test]
fn named_differences_are_what_the_event_publishes_and_the_event_is_unchanged() {
    let r = red("{paths: [/vault]}");
    let ex = ex(P, C, None);
    let plain = Event::build(&ex, &compare(&ex), "i", &r);
    let mut v = compare(&ex);
    let mut raw = r.name_differences(&mut v);
    let names: Vec<(String, String)> = v
        .differences
        .iter()
        .map(|d| (d.path.clone(), d.field.clone()))
        .collect();
    assert!(
        names.contains(&(
            "/by_email/<redacted:email>".into(),
            "/by_email/<redacted:email>".into()
        )),
        "{names:?}"
    );
    assert!(names.contains(&("/vault/<redacted>".into(), "/vault/<redacted>".into())));
    assert!(names.contains(&(
        "/by_card/<redacted:card>/limit".into(),
        "/by_card/<redacted:card>/limit".into()
    )));
    let text = format!("{names:?}");
    assert!(!text.contains("ann@") && !text.contains("vk-NAME") && !text.contains("4111"));
    // The event, built from the raw names put back, is the event of the raw verdict (the
    // signature aside: it is the published names' now).
    let ev = raw.with_raw(&mut v, |v| Event::build(&ex, v, "i", &r));
    assert_eq!(ev.differences, plain.differences);
    let published: Vec<(String, String)> = ev
        .differences
        .iter()
        .map(|d| (d.path.clone(), d.field.clone()))
        .collect();
    assert_eq!(
        published, names,
        "the statistics count what the event shows"
    );
    assert_eq!(ev.signature, v.signature);
    // The published names are back after the event.
    let after: Vec<(String, String)> = v
        .differences
        .iter()
        .map(|d| (d.path.clone(), d.field.clone()))
        .collect();
    assert_eq!(after, names);
}

#[test]
fn failures_that_differ_only_in_a_redacted_name_share_a_signature() {
    let r = Redaction::default();
    let a = ex(
        r#"{"by_email":{"ann@example.com":1}}"#,
        r#"{"by_email":{"ann@example.com":2}}"#,
        None,
    );
    let b = ex(
        r#"{"by_email":{"bob@example.org":1}}"#,
        r#"{"by_email":{"bob@example.org":2}}"#,
        None,
    );
    let (mut va, mut vb) = (compare(&a), compare(&b));
    assert_ne!(va.signature, vb.signature, "raw names sign apart");
    r.name_differences(&mut va);
    r.name_differences(&mut vb);
    assert_eq!(va.signature, vb.signature);
    // Nothing to rename: the comparator's signature stays.
    let plain = ex(r#"{"n":1}"#, r#"{"n":2}"#, None);
    let mut v = compare(&plain);
    let before = v.signature.clone();
    r.name_differences(&mut v);
    assert_eq!(v.signature, before);
}

#[test]
fn primary_versus_secondary_differences_are_named_too() {
    let r = red("{paths: [/vault]}");
    let ex = ex(P, C, Some(C));
    let mut v = compare(&ex);
    assert!(
        v.secondary_differences
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    );
    r.name_differences(&mut v);
    let fields: Vec<&str> = v
        .secondary_differences
        .iter()
        .flatten()
        .map(|d| d.field.as_str())
        .collect();
    assert!(fields.contains(&"/by_email/<redacted:email>"), "{fields:?}");
    for secret in ["ann@example.com", "vk-NAME", "4111-1111"] {
        assert!(
            !fields.iter().any(|f| f.contains(secret)),
            "{secret} in {fields:?}"
        );
    }
}

#[test]
fn quoted_text_is_scrubbed_and_withheld_when_it_mentions_a_redacted_key() {
    let r = red("{paths: [/**/token]}");
    // What the shadow client's errors look like: a Debug-quoted piece of the answer.
    let chunk = format!(
        "invalid answer: chunk size {:?}",
        r#"{"token": "tk-SECRET"}"#
    );
    assert!(chunk.contains(r#"\"token\": "#), "{chunk}");
    let q = r.quoted(&chunk);
    assert!(q.starts_with("<withheld:"), "{q}");
    let q = r.quoted(r#"invalid answer: chunk size "ann@example.com""#);
    assert_eq!(q, r#"invalid answer: chunk size "<redacted:email>""#);
    let q = r.quoted("timed out after 5s");
    assert_eq!(q, "timed out after 5s");
}
