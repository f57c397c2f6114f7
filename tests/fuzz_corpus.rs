#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The `wire` and `compare` fuzz targets' properties (`fuzz/src/`, compiled here as they are, so
//! CI checks on stable exactly what the fuzzer checks) over every input of their committed
//! corpora, and over seeds made at test time from `../shared/testdata` (skipped with a message
//! when that folder is absent; nothing of it is copied into the project). The `redact` target's
//! corpus is replayed by `tests/redaction.rs`.

#[path = "../fuzz/src/compare/mod.rs"]
mod compare;
#[path = "../fuzz/src/wire/mod.rs"]
mod wire;

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Runs `check` over every file of `fuzz/corpus/<target>` (at least 20), panicking with the
/// file's name at the first broken property; the results, each passed to `add`.
fn replay<E>(target: &str, check: impl Fn(&[u8]) -> Result<E, String>, mut add: impl FnMut(E)) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "only {} files in {}",
        files.len(),
        dir.display()
    );
    for f in files {
        match check(&std::fs::read(&f).unwrap()) {
            Ok(e) => add(e),
            Err(broken) => panic!("{}: {broken}", f.display()),
        }
    }
}

fn shared() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!("skipped: ../shared/testdata not present");
        None
    }
}

#[test]
fn the_wire_corpus_replays_with_every_property_holding() {
    let mut total = wire::Exercised::default();
    replay("wire", wire::check, |e| total.add(e));
    eprintln!("wire corpus: {total:?}");
    // Not vacuous: answers were read back whole (chunked among them), refused over the cap, and
    // malformed ones refused.
    assert!(
        total.round_trips >= 10 && total.chunked >= 3 && total.too_large >= 2 && total.errors >= 5,
        "{total:?}"
    );
}

#[test]
fn the_compare_corpus_replays_with_every_property_holding() {
    let mut total = compare::Exercised::default();
    replay("compare", compare::check, |e| total.add(e));
    eprintln!("compare corpus: {total:?}");
    // Not vacuous: differences were located, equivalent candidates compared, text compared,
    // changed numbers found.
    assert!(
        total.differences >= 100
            && total.equivalents >= 50
            && total.text >= 10
            && total.changed_numbers >= 5,
        "{total:?}"
    );
}

/// The round-trip expectations over every combination of framing, version, `connection`,
/// bodiless status, HEAD, a next answer behind and read size: what a corpus may happen to miss.
#[test]
fn every_framing_and_connection_combination_holds_the_wire_properties() {
    let total =
        wire::check_matrix(br#"{"id":1,"items":[1,2,3]}"#).unwrap_or_else(|b| panic!("{b}"));
    eprintln!("matrix: {total:?}");
    // Half the combinations have the cap one under the payload: those with a body (status 200,
    // not HEAD: a sixth of all) are over it.
    let all = 5 * 6 * 3 * 32;
    assert_eq!(total.too_large, all / 12, "{total:?}");
    assert_eq!(total.round_trips, all - all / 12, "{total:?}");
}

/// Real answers: the jsonplaceholder data set as a payload in every framing, read in odd
/// pieces; and every HTTP answer head found in the shared captures, with what follows it, as a
/// raw stream.
#[test]
fn shared_answers_hold_the_wire_properties() {
    let Some(root) = shared() else {
        return;
    };
    let data = std::fs::read(root.join("jsonplaceholder-data.json")).unwrap();
    let cuts: Vec<u16> = (0..4000).map(|i| [1, 7, 1500, 3, 65535][i % 5]).collect();
    let mut total = wire::Exercised::default();
    total.add(wire::check_payload(&data, 8192, &cuts).unwrap());
    total.add(wire::check_payload(&data[..20_000], 5, &cuts).unwrap());
    assert_eq!((total.round_trips, total.chunked), (6, 2), "{total:?}");

    let mut captures = Vec::new();
    let mut dirs = vec![root.join("pcap")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                captures.push(p);
            }
        }
    }
    let mut heads = 0;
    for p in captures {
        let bytes = std::fs::read(&p).unwrap();
        let mut at = 0;
        while let Some(i) = find(&bytes[at..], b"HTTP/1.") {
            let start = at + i;
            let stream = &bytes[start..(start + 16 * 1024).min(bytes.len())];
            for (head_request, cuts) in
                [(false, &[][..]), (false, &[1, 2, 3][..]), (true, &[60][..])]
            {
                wire::check_stream(stream, head_request, cuts)
                    .unwrap_or_else(|b| panic!("{} at {start}: {b}", p.display()));
            }
            heads += 1;
            at = start + 1;
        }
    }
    assert!(
        heads >= 50,
        "only {heads} answer heads found in the captures"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Other diff tools' document pairs (json-patch-tests, zjsonpatch, java-json-tools, jd, deepdiff)
/// and a slice of the jsonplaceholder data set against an edited copy, under every rule set.
#[test]
fn shared_pairs_hold_the_comparator_properties() {
    let Some(root) = shared() else {
        return;
    };
    let suites = root.join("diff-suites");
    let load = |rel: &str| -> Value {
        let text = std::fs::read_to_string(suites.join(rel)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let doc = |v: &Value| serde_json::to_vec(v).unwrap();
    for rel in [
        "json-patch-tests/tests.json",
        "json-patch-tests/spec_tests.json",
        "zjsonpatch/diff.json",
        "zjsonpatch/js-libs-samples.json",
        "java-json-tools-json-patch/diff.json",
    ] {
        for (a, b) in document_pairs(&load(rel)) {
            pairs.push((doc(a), doc(b)));
        }
    }
    for rel in ["jd-spec/core.json", "jd-spec/options.json"] {
        for case in load(rel).as_array().unwrap() {
            if let (Some(Value::String(a)), Some(Value::String(b))) =
                (case.get("content_a"), case.get("content_b"))
            {
                pairs.push((a.clone().into_bytes(), b.clone().into_bytes()));
            }
        }
    }
    for (a, b) in [
        ("t1", "t2"),
        ("nested_a_t1", "nested_a_t2"),
        ("nested_b_t1", "nested_b_t2"),
    ] {
        let read = |n: &str| std::fs::read(suites.join(format!("deepdiff/{n}.json"))).unwrap();
        pairs.push((read(a), read(b)));
    }
    let data: Value =
        serde_json::from_slice(&std::fs::read(root.join("jsonplaceholder-data.json")).unwrap())
            .unwrap();
    let users = data["users"].clone();
    let mut edited = users.clone();
    if let Value::Array(a) = &mut edited {
        a.reverse();
        a[0]["address"]["geo"]["lat"] = Value::from("0.0");
        a[1].as_object_mut().unwrap().remove("email");
    }
    pairs.push((doc(&users), doc(&edited)));

    let mut total = compare::Exercised::default();
    for (a, b) in &pairs {
        let e = compare::check_pair(a, b).unwrap_or_else(|broken| panic!("{broken}"));
        total.add(e);
    }
    eprintln!("{} shared pairs: {total:?}", pairs.len());
    assert!(pairs.len() >= 150, "only {} pairs", pairs.len());
    assert!(total.differences >= 200, "{total:?}");
}

/// Every (before, after) document pair of a patch suite, at any depth: `doc`/`expected`,
/// `node`/`expected`, `first`/`second`.
fn document_pairs(v: &Value) -> Vec<(&Value, &Value)> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => {
                for (a, b) in [
                    ("doc", "expected"),
                    ("node", "expected"),
                    ("first", "second"),
                ] {
                    if let (Some(x), Some(y)) = (m.get(a), m.get(b)) {
                        out.push((x, y));
                    }
                }
                stack.extend(m.values().filter(|x| x.is_array() || x.is_object()));
            }
            _ => {}
        }
    }
    out
}
