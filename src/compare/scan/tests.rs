#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The tape comparator against the reference walk over `serde_json::Value` trees
//! (`compare/json`): the same differences (paths, fields, kinds, values, order), truncation and
//! verdicts on seeded random JSON pairs under random rule sets; and the scanner against
//! serde_json: the same bodies accepted, the same values read.

use super::{Tape, diff};
use crate::compare::json::Walker;
use crate::compare::rules::{Effective, RuleSet};
use crate::compare::{Comparator, CompareOptions, Verdict};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::sync::Arc;

/// Pairs compared by [`tape_walk_equals_the_reference_walk`]; `SCAN_DIFF_CASES` overrides it
/// (longer local runs). 100,000 run in well under a minute in a debug build.
const CASES: usize = 100_000;
/// Pairs per random rule set.
const PAIRS_PER_RULESET: usize = 20;

/// A JSON document before it is written out: numbers as text (any spelling), duplicate keys
/// allowed.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// Numbers by value class: spellings in one class are equal, classes differ (some only within
/// the tolerances below, some beyond f64).
const NUMBERS: &[&[&str]] = &[
    &["0", "-0", "0.0", "0e5", "-0.0E-3"],
    &["1", "1.0", "1e0", "1E+0", "10e-1", "0.1e1"],
    &["1.5", "1.500", "15e-1", "0.15E1"],
    &["1.504"],
    &["2"],
    &["-7", "-7.00", "-0.7e1"],
    &["100", "1e2", "100.000"],
    &["100.0005"],
    &["12345678901234567890123", "1.2345678901234567890123e22"],
    &["12345678901234567890124"],
    &["9007199254740993"],
    &["9007199254740992", "9.007199254740992e15"],
    &["1e99999999999999999999", "10e99999999999999999998"],
    &["1e99999999999999999998"],
    &["1e400", "10E399"],
    &["2e400"],
    &["1e-400"],
    &["3.14159"],
    &["3.1416"],
    &["18446744073709551616", "1.8446744073709551616e19"],
];

const STRINGS: &[&str] = &[
    "a",
    "b",
    "A",
    "",
    "x/y",
    "t~0",
    "üñí",
    "😀 emoji",
    "42",
    " 42.0 ",
    "1e2",
    "true",
    "false",
    "http://host-a/p/1",
    "https://host-b/p/1",
    "ctl\u{1}\u{1f}",
    "quote\" back\\slash",
    "tab\tnew\nline",
    "id-7",
];

const KEYS: &[&str] = &[
    "a", "b", "c", "id", "sku", "x/y", "t~", "ü", "", "items", "tags", "n",
];

fn number(rng: &mut StdRng) -> (usize, String) {
    let class = rng.random_range(0..NUMBERS.len());
    (class, NUMBERS[class].choose(rng).unwrap().to_string())
}

fn string(rng: &mut StdRng) -> String {
    match rng.random_range(0..200) {
        0 => "z".repeat(rng.random_range(1020..1030)),
        1 => "é".repeat(1025),
        _ => STRINGS.choose(rng).unwrap().to_string(),
    }
}

fn scalar(rng: &mut StdRng) -> J {
    match rng.random_range(0..10) {
        0 => J::Null,
        1 => J::Bool(rng.random()),
        2..=5 => J::Num(number(rng).1),
        _ => J::Str(string(rng)),
    }
}

fn tree(rng: &mut StdRng, depth: u32) -> J {
    let container = depth < 4 && rng.random_range(0..10) < 6 - depth as i32;
    if !container {
        return scalar(rng);
    }
    let (n, below) = match rng.random_range(0..40) {
        // Large, of scalars: summarised in differences.
        0 => (rng.random_range(60..75), 4),
        _ => (rng.random_range(0..6), depth + 1),
    };
    if rng.random() {
        J::Arr((0..n).map(|_| tree(rng, below)).collect())
    } else {
        let mut m: Vec<(String, J)> = Vec::new();
        for _ in 0..n.min(8) {
            let k = KEYS.choose(rng).unwrap().to_string();
            // Mostly unique keys; now and then a duplicate (the last one wins).
            if m.iter().any(|(x, _)| *x == k) && rng.random_range(0..10) != 0 {
                continue;
            }
            m.push((k, tree(rng, below)));
        }
        J::Obj(m)
    }
}

/// The same value with another spelling: numbers of the same class.
fn respell(rng: &mut StdRng, j: &J) -> J {
    match j {
        J::Num(t) => NUMBERS
            .iter()
            .find(|c| c.contains(&t.as_str()))
            .map_or(j.clone(), |c| J::Num(c.choose(rng).unwrap().to_string())),
        J::Arr(a) => J::Arr(a.iter().map(|x| respell(rng, x)).collect()),
        J::Obj(m) => J::Obj(
            m.iter()
                .map(|(k, x)| (k.clone(), respell(rng, x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A candidate made from the primary: a few edits somewhere in the tree.
fn mutate(rng: &mut StdRng, j: &mut J, depth: u32) {
    let here = rng.random_range(0..4) == 0 || depth > 5;
    match j {
        J::Arr(a) if !here && !a.is_empty() => {
            let i = rng.random_range(0..a.len());
            mutate(rng, &mut a[i], depth + 1)
        }
        J::Obj(m) if !here && !m.is_empty() => {
            let i = rng.random_range(0..m.len());
            mutate(rng, &mut m[i].1, depth + 1)
        }
        J::Arr(a) => match rng.random_range(0..6) {
            0 => a.shuffle(rng),
            1 if !a.is_empty() => {
                a.remove(rng.random_range(0..a.len()));
            }
            2 => a.insert(rng.random_range(0..=a.len()), tree(rng, 3)),
            3 if a.len() > 1 => {
                let last = a.len() - 1;
                a.swap(0, last)
            }
            _ => *j = tree(rng, 2),
        },
        J::Obj(m) => match rng.random_range(0..5) {
            0 if !m.is_empty() => {
                m.remove(rng.random_range(0..m.len()));
            }
            1 => m.push((KEYS.choose(rng).unwrap().to_string(), tree(rng, 3))),
            2 => m.shuffle(rng),
            _ => *j = tree(rng, 2),
        },
        _ => {
            *j = match rng.random_range(0..4) {
                0 => respell(rng, j),
                1 => tree(rng, 3),
                _ => scalar(rng),
            }
        }
    }
}

/// Writes `j` as JSON text with random whitespace and escapes (the same value, other bytes).
fn write(rng: &mut StdRng, j: &J, out: &mut String) {
    let ws = |rng: &mut StdRng, out: &mut String| {
        if rng.random_range(0..6) == 0 {
            out.push_str([" ", "\n", "\t", "\r\n  "].choose(rng).unwrap());
        }
    };
    ws(rng, out);
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(t) => out.push_str(t),
        J::Str(s) => write_str(rng, s, out),
        J::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(rng, x, out);
            }
            ws(rng, out);
            out.push(']');
        }
        J::Obj(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                write_str(rng, k, out);
                ws(rng, out);
                out.push(':');
                write(rng, x, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
    ws(rng, out);
}

fn write_str(rng: &mut StdRng, s: &str, out: &mut String) {
    let escape_all = rng.random_range(0..8) == 0;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str(if escape_all { "\\u000A" } else { "\\n" }),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            '/' if escape_all => out.push_str("\\/"),
            c if escape_all && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04X}"));
                }
            }
            c if escape_all && c.is_ascii_alphabetic() && rng.random() => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn text(rng: &mut StdRng, j: &J) -> String {
    let mut s = String::new();
    write(rng, j, &mut s);
    s
}

/// A JSON Pointer pattern over the generator's keys, with wildcards and indices.
fn pattern(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..4);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        match rng.random_range(0..8) {
            0 => p.push('*'),
            1 => p.push_str("**"),
            2 => p.push_str(["0", "1", "2"].choose(rng).unwrap()),
            _ => crate::compare::pattern::escape_into(KEYS.choose(rng).unwrap(), &mut p),
        }
    }
    p
}

/// One or two patterns, distinct (map keys in the rules).
fn distinct_patterns(rng: &mut StdRng) -> Vec<String> {
    let mut v = vec![pattern(rng)];
    let other = pattern(rng);
    if rng.random() && other != v[0] {
        v.push(other);
    }
    v
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A random rule set: every path rule kind, over random patterns.
fn ruleset(rng: &mut StdRng) -> (RuleSet, String) {
    let mut y = String::from("version: 1\nrules:\n  - match: \"*\"\n");
    let list = |rng: &mut StdRng, n: usize| -> String {
        let v: Vec<String> = (0..rng.random_range(0..=n))
            .map(|_| q(&pattern(rng)))
            .collect();
        format!("[{}]", v.join(", "))
    };
    if rng.random() {
        y += &format!("    ignore: {}\n", list(rng, 2));
    }
    if rng.random() {
        y += &format!("    unordered: {}\n", list(rng, 3));
    }
    if rng.random() {
        let v: Vec<String> = distinct_patterns(rng)
            .iter()
            .map(|p| {
                let key = ["id", "sku", "a", "n"].choose(rng).unwrap();
                format!("{}: {}", q(p), q(key))
            })
            .collect();
        y += &format!("    keyed: {{{}}}\n", v.join(", "));
    }
    if rng.random() {
        let v: Vec<String> = distinct_patterns(rng)
            .iter()
            .map(|p| {
                let t = [
                    "{abs: 0.01}",
                    "{rel: 0.001}",
                    "{abs: 0.5, rel: 0.01}",
                    "{abs: 1e300}",
                ]
                .choose(rng)
                .unwrap();
                format!("{}: {t}", q(p))
            })
            .collect();
        y += &format!("    tolerance: {{{}}}\n", v.join(", "));
    }
    if rng.random_range(0..3) == 0 {
        let (re, rep) = [
            ("^https?://[^/]+", ""),
            ("[0-9]", "#"),
            ("a", "b"),
            ("(i)d", "$1D"),
        ]
        .choose(rng)
        .unwrap();
        y += &format!(
            "    rewrite: [{{path: {}, regex: {}, replace: {}}}]\n",
            q(&pattern(rng)),
            q(re),
            q(rep)
        );
    }
    if rng.random() {
        y += &format!("    coerce: {}\n", list(rng, 2));
    }
    if rng.random_range(0..4) == 0 {
        y += "    ignore_added: true\n";
    }
    let set = RuleSet::from_yaml(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
    (set, y)
}

/// The reference: serde_json trees and the tree walk.
fn reference(
    eff: &Effective,
    p: &[u8],
    c: &[u8],
    cap: usize,
) -> Option<(Vec<crate::compare::Difference>, bool)> {
    let pv: Value = serde_json::from_slice(p).ok()?;
    let cv: Value = serde_json::from_slice(c).ok()?;
    let mut w = Walker::new(eff, cap);
    w.diff(&pv, &cv);
    Some((w.out, w.truncated))
}

fn tape_diff(
    eff: &Effective,
    p: &[u8],
    c: &[u8],
    cap: usize,
) -> Option<(Vec<crate::compare::Difference>, bool)> {
    let (pt, ct) = (Tape::scan(p)?, Tape::scan(c)?);
    Some(diff(eff, &pt, &ct, cap))
}

#[test]
fn tape_walk_equals_the_reference_walk() {
    let cases = std::env::var("SCAN_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let mut rng = StdRng::seed_from_u64(0x5ca1_ab1e);
    let (mut set, mut yaml) = ruleset(&mut rng);
    let mut cmp = Comparator::new(Arc::new(set), CompareOptions::default());
    let (mut differing, mut truncated, mut verdicts) = (0, 0, 0);
    for case in 0..cases {
        if case % PAIRS_PER_RULESET == 0 && case > 0 {
            (set, yaml) = ruleset(&mut rng);
            let max_differences = *[1, 2, 3, 1000].choose(&mut rng).unwrap();
            cmp = Comparator::new(
                Arc::new(set),
                CompareOptions {
                    max_differences,
                    ..CompareOptions::default()
                },
            );
        }
        let pj = tree(&mut rng, 0);
        let mut cj = pj.clone();
        match rng.random_range(0..10) {
            0 => cj = respell(&mut rng, &pj),
            1 => cj = tree(&mut rng, 0),
            _ => {
                for _ in 0..rng.random_range(1..4) {
                    mutate(&mut rng, &mut cj, 0);
                }
            }
        }
        let (p, c) = (text(&mut rng, &pj), text(&mut rng, &cj));
        let eff = cmp.rules().effective("GET", "/", None);
        let cap = *[1, 2, 5, 1000].choose(&mut rng).unwrap();
        let want = reference(&eff, p.as_bytes(), c.as_bytes(), cap).expect("generated JSON parses");
        let got = tape_diff(&eff, p.as_bytes(), c.as_bytes(), cap).expect("generated JSON scans");
        assert_eq!(
            got, want,
            "case {case} (cap {cap}):\nrules:\n{yaml}\nprimary:   {p}\ncandidate: {c}"
        );
        differing += usize::from(!want.0.is_empty());
        truncated += usize::from(want.1);
        // The whole verdict through the comparator, against one made from the reference.
        if case % 10 == 0 {
            let v = cmp.compare_bodies(None, p.as_bytes(), c.as_bytes(), None, None);
            let (d, t) = if p == c {
                (Vec::new(), false)
            } else {
                let cap = cmp.opts.max_differences;
                reference(&eff, p.as_bytes(), c.as_bytes(), cap).unwrap()
            };
            let r = Verdict::from_differences(d, Vec::new(), t);
            assert_eq!(
                v, r,
                "case {case}: verdict\nrules:\n{yaml}\nprimary:   {p}\ncandidate: {c}"
            );
            verdicts += 1;
        }
    }
    eprintln!(
        "{cases} pairs: {differing} with differences, {truncated} truncated, {verdicts} whole verdicts"
    );
    // Not vacuous: most pairs differ, some hit the cap, some are equal.
    assert!(differing > cases / 2 && truncated > cases / 50 && differing < cases);
}

/// Bodies serde_json refuses are refused, and the values read are serde_json's, byte for byte:
/// generated documents, each also cut and altered at random places.
#[test]
fn the_scanner_accepts_and_reads_what_serde_json_does() {
    let mut rng = StdRng::seed_from_u64(0xacce_97ed);
    let noise: &[&str] = &[
        "",
        "\\",
        "\"",
        ",",
        ":",
        "]",
        "}",
        "[",
        "{",
        "-",
        ".",
        "e",
        "E+",
        "0",
        "01",
        "\\u",
        "\\ud800",
        "\\udc00",
        "\\uD83D\\uDE00",
        "\\x",
        "\u{1}",
        "\u{7f}",
        "é",
        "\t",
        "tru",
        "nul",
        "1.",
        ".5",
    ];
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..20_000 {
        let j = tree(&mut rng, 0);
        let mut t = text(&mut rng, &j).into_bytes();
        if case % 2 == 1 && !t.is_empty() {
            let at = rng.random_range(0..=t.len());
            match rng.random_range(0..3) {
                0 => t.truncate(at),
                1 => {
                    t.remove(at.min(t.len() - 1));
                }
                _ => {
                    let ins = noise.choose(&mut rng).unwrap().as_bytes().to_vec();
                    t.splice(at..at, ins);
                }
            }
            if rng.random_range(0..20) == 0 {
                t.push(0xff); // invalid UTF-8
            }
        }
        let want = serde_json::from_slice::<Value>(&t).ok();
        let got = Tape::scan(&t).map(|tape| tape.to_value(0));
        assert_eq!(got, want, "case {case}: {:?}", String::from_utf8_lossy(&t));
        if want.is_some() {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted > 10_000 && refused > 3_000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn the_scanner_keeps_serde_jsons_edges() {
    let cases: &[&str] = &[
        "",
        " ",
        "1",
        " 1 ",
        "-",
        "-0",
        "01",
        "1.",
        "1.e5",
        "1e",
        "1e+",
        "1E5",
        "1e-5",
        "0.5e+05",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800x\"",
        "\"\\u00e9\"",
        "\"\\u00G9\"",
        "\"a\nb\"",
        "\"\x7f\"",
        "[1,]",
        "{\"a\":1,}",
        "{,}",
        "[,1]",
        "{\"a\" 1}",
        "{1:2}",
        "truex",
        "true false",
        "nulll",
        "[1 2]",
        "\u{feff}1",
        "\"\\/\"",
        "{\"a\":1,\"a\":2}",
        "[]",
        "{}",
        "[[]]",
        "\"\\'\"",
        "1 \u{b}",
    ];
    for c in cases {
        let want = serde_json::from_slice::<Value>(c.as_bytes()).ok();
        let got = Tape::scan(c.as_bytes()).map(|t| t.to_value(0));
        assert_eq!(got, want, "{c:?}");
    }
    // Nesting: 127 levels parse, 128 do not (serde_json's recursion limit).
    for depth in [126, 127, 128, 129] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let doc = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            let want = serde_json::from_slice::<Value>(doc.as_bytes()).is_ok();
            assert_eq!(
                Tape::scan(doc.as_bytes()).is_some(),
                want,
                "depth {depth} {open}"
            );
        }
    }
}
