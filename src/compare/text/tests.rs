#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Text-body noise judged line by line (issue 16, item 1), through the whole comparator where
//! the verdict matters, and on `text_diff` where the hunks do.

use super::*;
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions, VerdictKind};
use crate::exchange::{Exchange, Request, Response};
use std::sync::Arc;

const U1: &str = "request-id: 6f1c2a0e-9d4b-4c3a-8e21-0b7f5d9a3c11\n";
const U2: &str = "request-id: a93e7b52-1f08-4d6c-b4a9-7c2e0d8f6b35\n";
const U3: &str = "request-id: 0d4b8e19-73a6-4f2c-9b5e-e1c7a3f90d42\n";
const REST: &str = "item: widget\nprice: 10\n";

fn text(body: String) -> Response {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
    Response {
        status: 200,
        headers,
        body: body.into(),
        latency: std::time::Duration::ZERO,
    }
}

/// Compares one exchange whose primary, secondary and candidate answer these texts.
fn judge(p: String, s: String, c: String) -> crate::compare::Verdict {
    let ex = exchange(p, s, c);
    Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default()).compare(&ex)
}

fn exchange(p: String, s: String, c: String) -> Exchange {
    Exchange {
        id: "x".into(),
        ts: std::time::SystemTime::UNIX_EPOCH,
        source: "test",
        endpoint: "GET /t".into(),
        request: Request {
            method: "GET".into(),
            path: "/t".into(),
            ..Default::default()
        },
        primary: text(p),
        candidate: Ok(text(c)),
        secondary: Some(Ok(text(s))),
        sends: None,
    }
}

/// The repro: primary and secondary differ only in their request ids; a candidate that
/// answers something else entirely was called `noise` (`[body "" noise=true]`).
#[test]
fn a_candidate_replacing_the_whole_body_is_a_mismatch_however_noisy_one_line_is() {
    let v = judge(
        format!("{U1}{REST}"),
        format!("{U2}{REST}"),
        "something completely different\n".into(),
    );
    assert_eq!(v.kind, VerdictKind::Mismatch, "{:?}", v.differences);
    assert!(
        v.differences.iter().all(|d| !d.noise),
        "{:?}",
        v.differences
    );
    assert_eq!(v.differences[0].primary, format!("{U1}{REST}"));
}

#[test]
fn a_shared_noise_line_is_noise_and_another_changed_line_is_the_mismatch() {
    for (c, real_removed, real_added) in [
        // The real change away from the noisy line: two hunks.
        (
            format!("{U3}item: widget\nlabel: a\nb\nc\nprice: 12\n"),
            "price: 10\n",
            "label: a\nb\nc\nprice: 12\n",
        ),
        // Right next to it: one replaced block, split line by line.
        (
            format!("{U3}item: gadget\nprice: 10\n"),
            "item: widget\n",
            "item: gadget\n",
        ),
    ] {
        let v = judge(format!("{U1}{REST}"), format!("{U2}{REST}"), c.clone());
        assert_eq!(v.kind, VerdictKind::Mismatch, "{c}");
        let (noise, real): (Vec<_>, Vec<_>) = v.differences.iter().partition(|d| d.noise);
        assert_eq!((noise.len(), real.len()), (1, 1), "{:#?}", v.differences);
        assert_eq!(noise[0].primary, U1);
        assert_eq!(noise[0].candidate, U3);
        assert_eq!(real[0].primary, real_removed, "{c}");
        assert_eq!(real[0].candidate, real_added, "{c}");
        assert!(
            !real[0].detail.as_deref().unwrap().contains("+request-id"),
            "the real hunk shows no noise change: {:?}",
            real[0].detail
        );
        // The signature is the real change's alone, like every mismatch with noise in it.
        let sig = crate::compare::signature(&[real[0].clone()]);
        assert_eq!(v.signature.as_deref(), Some(sig.as_str()));
    }
}

/// The published event (DESIGN.md: `body` differences with a line diff) keeps the marks: the
/// redacted renderings are judged against the secondary's the same way.
#[test]
fn the_published_event_marks_the_shared_line_noise_and_the_other_real() {
    let ex = exchange(
        format!("{U1}{REST}"),
        format!("{U2}{REST}"),
        format!("{U3}item: widget\nlabel: a\nb\nc\nprice: 12\n"),
    );
    let v = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default()).compare(&ex);
    let e = crate::event::Event::build(&ex, &v, "i", &crate::redact::Redaction::default());
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["verdict"], "mismatch");
    let marks: Vec<(bool, &str)> = json["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["noise"].as_bool().unwrap(), d["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(marks, [(true, "body"), (false, "body")], "{json:#}");
    assert_eq!(json["differences"][1]["primary"], "price: 10\n");
}

#[test]
fn only_noise_lines_changed_is_noise() {
    let v = judge(
        format!("{U1}{REST}"),
        format!("{U2}{REST}"),
        format!("{U3}{REST}"),
    );
    assert_eq!(v.kind, VerdictKind::Noise, "{:?}", v.differences);
    // Without a secondary the same candidate is a mismatch.
    let cmp = Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default());
    let alone = cmp.compare_bodies(
        None,
        format!("{U1}{REST}").as_bytes(),
        format!("{U3}{REST}").as_bytes(),
        None,
        None,
    );
    assert_eq!(alone.kind, VerdictKind::Mismatch);
}

#[test]
fn a_line_is_explained_only_in_the_words_the_secondary_changed() {
    let p = "GET /x 200 took 12ms id=1\n";
    let s = "GET /x 200 took 15ms id=1\n";
    // The same word changed: noise. Another word, or another word count: real.
    assert!(compatible_line(p, s, "GET /x 200 took 99ms id=1\n"));
    assert!(!compatible_line(p, s, "GET /x 500 took 99ms id=1\n"));
    assert!(!compatible_line(p, s, "GET /x 200 took 99ms id=1 extra\n"));
    assert!(!compatible_line(p, s, "something else\n"));
    // The secondary changed the word count (a message of varying length): the words around
    // the changed stretch must stay.
    let p = "at 10:00 user bob logged in from 1.2.3.4\n";
    let s = "at 10:01 user bob logged in again from 1.2.3.4\n";
    assert!(compatible_line(
        p,
        s,
        "at 10:02 user bob logged out from 1.2.3.4\n"
    ));
    assert!(!compatible_line(
        p,
        s,
        "at 10:02 user bob logged out from 5.6.7.8\n"
    ));
}

#[test]
fn deletions_and_insertions_are_noise_only_where_the_secondary_made_them() {
    let p = "a\nb\nc\nd\ne\nf\ng\nh\ni\n";
    // The secondary drops `b` and inserts `x` before `h` (far enough apart for two hunks).
    let s = "a\nc\nd\ne\nf\ng\nx\nh\ni\n";
    let marks = |c: &str| -> Vec<(String, String, bool)> {
        text_diff(p, c, Some(s), MAX_HUNKS)
            .differences
            .into_iter()
            .map(|d| {
                (
                    d.primary.as_str().unwrap().to_string(),
                    d.candidate.as_str().unwrap().to_string(),
                    d.noise,
                )
            })
            .collect()
    };
    // The same deletion and insertion: noise.
    assert_eq!(
        marks("a\nc\nd\ne\nf\ng\nx\nh\ni\n"),
        [
            ("b\n".into(), "".into(), true),
            ("".into(), "x\n".into(), true)
        ]
    );
    // Another deleted line, another inserted text: real.
    assert_eq!(
        marks("a\nb\nd\ne\nf\ng\nh\ny\ni\n"),
        [
            ("c\n".into(), "".into(), false),
            ("".into(), "y\n".into(), false)
        ]
    );
}

#[test]
fn without_a_secondary_hunks_group_as_a_unified_diff_does() {
    let p = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
    // Changes 4 lines apart share a hunk (gap ≤ 2 × context); 5 apart do not.
    let d = text_diff(
        p,
        "1\nX\n3\n4\n5\n6\nY\n8\n9\n10\n11\n12\n",
        None,
        MAX_HUNKS,
    );
    assert_eq!(d.differences.len(), 1);
    assert_eq!(
        d.differences[0].detail.as_deref().unwrap(),
        "@@ -1,9 +1,9 @@\n 1\n-2\n+X\n 3\n 4\n 5\n 6\n-7\n+Y\n 8\n 9\n"
    );
    let d = text_diff(
        p,
        "1\nX\n3\n4\n5\n6\n7\nY\n9\n10\n11\n12\n",
        None,
        MAX_HUNKS,
    );
    assert_eq!(d.differences.len(), 2);
    assert!(d.differences.iter().all(|d| !d.noise));
}

#[test]
fn a_real_change_past_the_hunk_cap_keeps_the_last_hunk_real() {
    // Twelve noisy lines (every other line), then one real change: the cap folds the real
    // change into the last reported hunk, which must then not claim to be noise.
    let mut p = String::new();
    let mut s = String::new();
    let mut c = String::new();
    for i in 0..12 {
        p.push_str(&format!("id {i}a\nkeep\nkeep\nkeep\nkeep\nkeep\n"));
        s.push_str(&format!("id {i}b\nkeep\nkeep\nkeep\nkeep\nkeep\n"));
        c.push_str(&format!("id {i}c\nkeep\nkeep\nkeep\nkeep\nkeep\n"));
    }
    p.push_str("total 1\n");
    s.push_str("total 1\n");
    c.push_str("total 2\n");
    let d = text_diff(&p, &c, Some(&s), MAX_HUNKS);
    assert_eq!(d.hunks, 13);
    assert_eq!(d.differences.len(), MAX_HUNKS);
    assert!(d.differences[..MAX_HUNKS - 1].iter().all(|d| d.noise));
    assert!(!d.differences[MAX_HUNKS - 1].noise);
    assert!(
        d.differences[MAX_HUNKS - 1]
            .detail
            .as_deref()
            .unwrap()
            .contains("3 more changed hunk(s) not shown")
    );
}

#[test]
fn binary_bodies_are_noise_only_when_the_candidate_answers_the_secondary_s_bytes() {
    let (p, s) = (&[0u8, 1, 2][..], &[0u8, 1, 3][..]);
    assert!(binary_diff(p, s, Some(s)).noise);
    assert!(!binary_diff(p, &[0u8, 1, 4], Some(s)).noise);
    assert!(!binary_diff(p, s, None).noise);
}
