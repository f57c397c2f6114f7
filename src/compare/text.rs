//! Non-JSON bodies: text gets a line diff (`similar`, with a deadline so a pathological pair
//! cannot stall a worker), binary is equal or not by content.

use super::{DiffKind, Difference};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use std::fmt::Write;
use std::time::Duration;

/// Hunks reported per body; the rest are summarised in the last one's detail.
const MAX_HUNKS: usize = 10;
/// Characters of unified excerpt kept per hunk.
const MAX_EXCERPT: usize = 2000;

/// Differences between two text bodies: one `body` difference per changed hunk, `primary` and
/// `candidate` holding the removed and added lines, `detail` a short unified excerpt.
pub fn text_diff(p: &str, c: &str) -> Vec<Difference> {
    let diff = TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(Duration::from_millis(200))
        .diff_lines(p, c);
    let mut out = Vec::new();
    let groups = diff.grouped_ops(2);
    let total = groups.len();
    for (n, group) in groups.iter().enumerate() {
        if n == MAX_HUNKS {
            if let Some(last) = out.last_mut() {
                let d: &mut Difference = last;
                let detail = d.detail.get_or_insert_with(String::new);
                let _ = write!(
                    detail,
                    "\n… {} more changed hunk(s) not shown",
                    total - MAX_HUNKS
                );
            }
            break;
        }
        if group.is_empty() {
            continue;
        }
        let (old_start, old_len) = span(group.iter().map(|op| op.old_range()));
        let (new_start, new_len) = span(group.iter().map(|op| op.new_range()));
        let mut detail = format!(
            "@@ -{},{} +{},{} @@\n",
            old_start + 1,
            old_len,
            new_start + 1,
            new_len
        );
        let (mut removed, mut added) = (String::new(), String::new());
        for op in group {
            for change in diff.iter_changes(op) {
                let (sign, sink) = match change.tag() {
                    ChangeTag::Equal => (' ', None),
                    ChangeTag::Delete => ('-', Some(&mut removed)),
                    ChangeTag::Insert => ('+', Some(&mut added)),
                };
                let line = change.value();
                if let Some(s) = sink {
                    s.push_str(line);
                }
                if detail.len() < MAX_EXCERPT {
                    detail.push(sign);
                    detail.push_str(line);
                    if !line.ends_with('\n') {
                        detail.push_str("\n\\ No newline at end of file\n");
                    }
                }
            }
        }
        if detail.len() > MAX_EXCERPT {
            let cut = detail.floor_char_boundary(MAX_EXCERPT);
            detail.truncate(cut);
            detail.push_str("…\n");
        }
        out.push(Difference {
            path: String::new(),
            field: String::new(),
            kind: DiffKind::Body,
            primary: Value::String(clip(removed)),
            candidate: Value::String(clip(added)),
            noise: false,
            detail: Some(detail),
        });
    }
    out
}

/// Where a hunk's lines start on one side, and how many: from its ops' non-empty ranges only.
/// similar 2.7's Myers can give a `Delete` a wrong `new_index` (mitsuhiko/similar#78, fixed in
/// 3.1): taking the first op's start and the last op's end then underflowed, a panic in debug
/// builds and a length near 2^64 in release ones (found by the `compare` fuzz target).
fn span(ranges: impl Iterator<Item = std::ops::Range<usize>>) -> (usize, usize) {
    let (mut first, mut start, mut end) = (None, usize::MAX, 0);
    for r in ranges {
        first.get_or_insert(r.start);
        if !r.is_empty() {
            start = start.min(r.start);
            end = end.max(r.end);
        }
    }
    if start == usize::MAX {
        (first.unwrap_or(0), 0)
    } else {
        (start, end - start)
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_EXCERPT {
        let cut = s.floor_char_boundary(MAX_EXCERPT);
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Whether bytes should be treated as binary: not UTF-8, or containing NUL.
pub fn is_binary(b: &[u8]) -> bool {
    b.contains(&0) || std::str::from_utf8(b).is_err()
}

/// The single difference for two binary bodies that are not byte-identical.
pub fn binary_diff(p: &[u8], c: &[u8]) -> Difference {
    Difference {
        path: String::new(),
        field: String::new(),
        kind: DiffKind::Body,
        primary: Value::String(describe_binary(p)),
        candidate: Value::String(describe_binary(c)),
        noise: false,
        detail: Some("binary bodies differ".into()),
    }
}

fn describe_binary(b: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(b);
    format!(
        "<{} bytes, sha256 {}>",
        b.len(),
        h.iter()
            .take(8)
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}
