#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions, DiffKind, VerdictKind};
use crate::exchange::{Request, Response};
use bytes::Bytes;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

/// Field `n` as a varint, as a string, as a nested message.
fn varint_field(n: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, u64::from(n) << 3);
    put_varint(&mut out, v);
    out
}

fn bytes_field(n: u32, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, (u64::from(n) << 3) | 2);
    put_varint(&mut out, b.len() as u64);
    out.extend_from_slice(b);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `{1: "A-1", 3: qty}` inside field 2, twice, then field 5 as a double.
fn order(qty: u64) -> Vec<u8> {
    let item = [bytes_field(1, b"A-1"), varint_field(3, qty)].concat();
    let other = [bytes_field(1, b"B-2"), varint_field(3, 1)].concat();
    let mut m = [
        bytes_field(1, b"o-1"),
        bytes_field(2, &item),
        bytes_field(2, &other),
    ]
    .concat();
    m.push((5 << 3) | 1);
    m.extend_from_slice(&9.99f64.to_le_bytes());
    m
}

fn frame(msg: &[u8], gzip: bool) -> Vec<u8> {
    let body = if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(msg).unwrap();
        e.finish().unwrap()
    } else {
        msg.to_vec()
    };
    let mut out = vec![u8::from(gzip)];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn answer(body: Vec<u8>, extra: &[(&'static str, &'static str)]) -> Response {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/grpc".parse().unwrap());
    headers.insert("grpc-status", "0".parse().unwrap());
    for (k, v) in extra {
        headers.insert(*k, v.parse().unwrap());
    }
    Response {
        status: 200,
        headers,
        body: Bytes::from(body),
        latency: Duration::ZERO,
    }
}

fn compare(rules: &str, p: &Response, c: &Response) -> crate::compare::Verdict {
    let rules = if rules.is_empty() {
        RuleSet::default()
    } else {
        RuleSet::from_yaml(&format!("version: 1\nrules:\n{rules}")).unwrap()
    };
    let req = Request {
        method: "POST".into(),
        path: "/shop.Orders/Get".into(),
        query: None,
        headers: http::HeaderMap::new(),
        body: Bytes::new(),
    };
    Comparator::new(Arc::new(rules), CompareOptions::default()).compare_responses(&req, None, p, c)
}

#[test]
fn raw_decoding_reads_like_protoc_decode_raw() {
    let v = raw::decode(&order(2)).unwrap();
    assert_eq!(
        v,
        json!({"1": "o-1", "2": [{"1": "A-1", "3": 2}, {"1": "B-2", "3": 1}], "5": "0x4023fae147ae147b"})
    );
    // Not a message: a zero field number, a group, a length past the end.
    assert!(raw::decode(&[0x00, 0x01]).is_none());
    assert!(raw::decode(&[0x0b]).is_none());
    assert!(raw::decode(&[0x0a, 0x05, b'a']).is_none());
    // Bytes that are neither text nor a message keep their bytes, escaped.
    let v = raw::decode(&bytes_field(4, &[0xff, 0x00, b'a'])).unwrap();
    assert_eq!(v, json!({"4": "\\xff\\x00a"}));
}

#[test]
fn a_difference_in_a_compressed_message_is_found_at_its_field_numbers() {
    let p = answer(frame(&order(2), false), &[]);
    let c = answer(frame(&order(3), true), &[("grpc-encoding", "gzip")]);
    let v = compare("", &p, &c);
    assert_eq!(v.kind, VerdictKind::Mismatch, "{v:#?}");
    assert_eq!(v.differences.len(), 1, "{v:#?}");
    let d = &v.differences[0];
    assert_eq!(
        (d.path.as_str(), d.field.as_str(), d.kind),
        ("/2/0/3", "/2/*/3", DiffKind::Value)
    );
    // The same message, compressed on one side only, matches.
    let c = answer(frame(&order(2), true), &[("grpc-encoding", "gzip")]);
    assert_eq!(compare("", &p, &c).kind, VerdictKind::Match);
}

#[test]
fn field_rules_apply_to_field_numbers() {
    let p = answer(frame(&order(2), false), &[]);
    let c = answer(frame(&order(3), false), &[]);
    let ignore = "  - match: \"*\"\n    ignore: [\"/2/*/3\"]\n";
    assert_eq!(compare(ignore, &p, &c).kind, VerdictKind::Match);
    let tolerance = "  - match: \"*\"\n    tolerance: {\"/2/*/3\": {abs: 1}}\n";
    assert_eq!(compare(tolerance, &p, &c).kind, VerdictKind::Match);
    let elsewhere = "  - match: \"*\"\n    ignore: [\"/2/*/1\"]\n";
    assert_eq!(compare(elsewhere, &p, &c).kind, VerdictKind::Mismatch);
}

#[test]
fn a_stream_is_an_array_of_messages() {
    let p = answer(
        [frame(&order(2), false), frame(&order(2), false)].concat(),
        &[],
    );
    let c = answer(
        [frame(&order(2), false), frame(&order(4), false)].concat(),
        &[],
    );
    let v = compare("", &p, &c);
    let paths: Vec<&str> = v.differences.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/1/2/0/3"]);
}

#[test]
fn a_server_failure_status_is_a_candidate_error_and_other_statuses_differ_as_headers() {
    let p = answer(frame(&order(2), false), &[]);
    let c = answer(
        Vec::new(),
        &[("grpc-status", "14"), ("grpc-message", "down")],
    );
    let v = compare("", &p, &c);
    assert_eq!(v.kind, VerdictKind::CandidateError, "{v:#?}");
    let c = answer(Vec::new(), &[("grpc-status", "5")]);
    let v = compare("", &p, &c);
    assert_eq!(v.kind, VerdictKind::Mismatch);
    assert!(
        v.differences
            .iter()
            .any(|d| d.path == "@headers/grpc-status"),
        "{v:#?}"
    );
}

#[test]
fn bodies_that_are_not_messages_are_compared_as_bytes_with_a_note() {
    let p = answer(vec![0, 0, 0, 0, 9, 1], &[]);
    let c = answer(frame(&order(2), false), &[]);
    let v = compare("", &p, &c);
    assert_eq!(v.kind, VerdictKind::Mismatch);
    assert!(
        v.notes.iter().any(|n| n.contains("cut short")),
        "{:?}",
        v.notes
    );
    // A message that inflates past the limit is refused, not inflated.
    let big = frame(&vec![0u8; 64 << 10], true);
    assert!(frames::split(&big, Some("gzip"), 1024).is_err());
    assert_eq!(
        frames::split(&big, Some("gzip"), 1 << 20).unwrap()[0].len(),
        64 << 10
    );
}
