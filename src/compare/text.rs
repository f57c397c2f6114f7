//! Non-JSON bodies: text gets a line diff (`similar`, with a deadline so a pathological pair
//! cannot stall a worker), binary is equal or not by content.
//!
//! With a secondary answer, text noise is judged **line by line**, the text analogue of
//! [`super::noise`]: a line is what a field is to JSON, a whitespace-separated word what a scalar
//! value is. A candidate change is noise only where the secondary changed the same primary lines
//! in a compatible way:
//!
//! - a changed line (one line for one) is noise when the secondary also changed that line one for
//!   one, and the candidate's line differs from the primary's only in words the secondary changed
//!   too (same word count; when the secondary changed the word count, the candidate must keep the
//!   words before and after the secondary's changed stretch);
//! - a deleted line is noise when the secondary deleted that line;
//! - inserted lines, or a block replaced by a different number of lines, are noise only when the
//!   secondary made exactly the same change at the same place;
//! - a binary body is noise only when the candidate's bytes are the secondary's.
//!
//! Everything else is a real change, so a candidate that replaces a whole body is a mismatch
//! however noisy one of its lines is. Noise and real changes never share a reported hunk: each
//! `body` difference is either all noise or all real.

use super::{DiffKind, Difference};
use serde_json::Value;
use similar::{DiffTag, TextDiff};
use std::collections::HashMap;
use std::fmt::Write;
use std::ops::Range;
use std::time::Duration;

/// Hunks reported per body; the rest are summarised in the last one's detail.
pub const MAX_HUNKS: usize = 10;
/// Characters of unified excerpt kept per hunk.
const MAX_EXCERPT: usize = 2000;
/// Unchanged lines shown around a change; changes closer than twice this share a hunk.
const CONTEXT: usize = 2;

/// The line diff of two text bodies.
pub struct LineDiff {
    /// One `body` difference per hunk (at most `cap`), `primary` and `candidate` holding the
    /// removed and added lines, `detail` a short unified excerpt.
    pub differences: Vec<Difference>,
    /// Hunks found, including those folded into the last reported one.
    pub hunks: usize,
}

/// Differences between two text bodies, at most `cap` hunks (the rest are folded into the last
/// one: noted in its detail, and it is noise only if all of them are). With `secondary` (the
/// secondary's body as text), each hunk is marked noise as the module documentation says.
pub fn text_diff(p: &str, c: &str, secondary: Option<&str>, cap: usize) -> LineDiff {
    let pc = lines(p, c);
    let old = pc.old_slices();
    let new = pc.new_slices();
    let ps = secondary.map(|s| lines(p, s));
    let sec = ps.as_ref().map(SecondaryChanges::of);
    let mut changes = Vec::new();
    for (tag, o, n) in ops(&pc) {
        if tag == DiffTag::Equal {
            continue;
        }
        match &sec {
            Some(sec) => sec.classify(old, new, o, n, &mut changes),
            None => changes.push(Change {
                old: o,
                new: n,
                noise: false,
            }),
        }
    }
    let hunks = group(&changes);
    let total = hunks.len();
    let cap = cap.max(1);
    let mut differences: Vec<Difference> = hunks
        .iter()
        .enumerate()
        .take(cap)
        .map(|(i, h)| {
            // Context stops at the neighbouring hunks' changes (a noise hunk may touch a real one).
            let lo = i
                .checked_sub(1)
                .map_or(0, |j| hunks[j][hunks[j].len() - 1].old.end);
            let hi = hunks.get(i + 1).map_or(old.len(), |h| h[0].old.start);
            render(old, new, h, lo..hi)
        })
        .collect();
    if total > cap
        && let Some(last) = differences.last_mut()
    {
        let detail = last.detail.get_or_insert_with(String::new);
        let _ = write!(detail, "\n… {} more changed hunk(s) not shown", total - cap);
        // A real change must not hide behind a noisy last hunk.
        last.noise &= hunks[cap..].iter().all(|h| h[0].noise);
    }
    LineDiff {
        differences,
        hunks: total,
    }
}

fn lines<'a>(a: &'a str, b: &'a str) -> TextDiff<'a, 'a, 'a, str> {
    TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(Duration::from_millis(200))
        .diff_lines(a, b)
}

/// The diff's ops as (tag, old range, new range), an empty range placed where the other side's
/// cursor is. similar 2.7's Myers can give a `Delete` a wrong `new_index` (mitsuhiko/similar#78,
/// fixed in 3.1, a major upgrade that changes Myers output): trusting it underflowed the hunk
/// header, a panic in debug builds and a length near 2^64 in release ones (found by the
/// `compare` fuzz target, `text_hunk_headers_survive_a_misplaced_delete`).
fn ops(d: &TextDiff<'_, '_, '_, str>) -> Vec<(DiffTag, Range<usize>, Range<usize>)> {
    let (mut old_at, mut new_at) = (0, 0);
    d.ops()
        .iter()
        .map(|op| {
            let (tag, mut o, mut n) = op.as_tag_tuple();
            if o.is_empty() {
                o = old_at..old_at;
            }
            if n.is_empty() {
                n = new_at..new_at;
            }
            (old_at, new_at) = (o.end, n.end);
            (tag, o, n)
        })
        .collect()
}

/// One change of primary lines `old` into candidate lines `new`.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    old: Range<usize>,
    new: Range<usize>,
    noise: bool,
}

/// What the secondary did to the primary's lines.
struct SecondaryChanges<'a> {
    lines: &'a [&'a str],
    /// Per primary line: the secondary's change covering it (primary range, secondary range).
    at: Vec<Option<(Range<usize>, Range<usize>)>>,
    /// Pure insertions, by the primary position they precede.
    inserted: HashMap<usize, Range<usize>>,
}

impl<'a> SecondaryChanges<'a> {
    fn of(d: &'a TextDiff<'a, 'a, 'a, str>) -> Self {
        let mut at = vec![None; d.old_slices().len()];
        let mut inserted = HashMap::new();
        for (tag, o, n) in ops(d) {
            match tag {
                DiffTag::Equal => {}
                DiffTag::Insert => {
                    inserted.insert(o.start, n);
                }
                DiffTag::Delete | DiffTag::Replace => {
                    for slot in &mut at[o.clone()] {
                        *slot = Some((o.clone(), n.clone()));
                    }
                }
            }
        }
        Self {
            lines: d.new_slices(),
            at,
            inserted,
        }
    }

    /// The secondary's line for primary line `i`, when it changed that line one for one.
    fn one_for_one(&self, i: usize) -> Option<&str> {
        let (o, n) = self.at.get(i)?.as_ref()?;
        (o.len() == n.len()).then(|| self.lines[n.start + (i - o.start)])
    }

    /// Whether candidate line `cl` replacing primary line `i` is explained by the secondary.
    fn explains_line(&self, old: &[&str], i: usize, cl: &str) -> bool {
        self.one_for_one(i)
            .is_some_and(|sl| compatible_line(old[i], sl, cl))
    }

    /// Whether the secondary replaced exactly primary lines `o` by exactly the lines `cand`.
    fn did_same(&self, o: &Range<usize>, cand: &[&str]) -> bool {
        let same = |n: &Range<usize>| &self.lines[n.clone()] == cand;
        if o.is_empty() {
            return self.inserted.get(&o.start).is_some_and(same);
        }
        match self.at.get(o.start).and_then(Option::as_ref) {
            Some((so, sn)) => so == o && same(sn),
            None => false,
        }
    }

    /// Splits one candidate change into noise and real parts.
    fn classify(
        &self,
        old: &[&str],
        new: &[&str],
        o: Range<usize>,
        n: Range<usize>,
        out: &mut Vec<Change>,
    ) {
        let push = |out: &mut Vec<Change>, old: Range<usize>, new: Range<usize>, noise: bool| {
            // Adjacent parts of the same kind make one change.
            if let Some(last) = out.last_mut()
                && last.noise == noise
                && last.old.end == old.start
                && last.new.end == new.start
            {
                last.old.end = old.end;
                last.new.end = new.end;
                return;
            }
            out.push(Change { old, new, noise });
        };
        if self.did_same(&o, &new[n.clone()]) {
            return push(out, o, n, true);
        }
        if n.is_empty() {
            // Deleted lines: noise where the secondary deleted them too.
            for i in o {
                let deleted = matches!(self.at.get(i), Some(Some((_, sn))) if sn.is_empty());
                push(out, i..i + 1, n.start..n.start, deleted);
            }
            return;
        }
        if o.len() == n.len() {
            for (i, j) in o.zip(n) {
                let noise = self.explains_line(old, i, new[j]);
                push(out, i..i + 1, j..j + 1, noise);
            }
            return;
        }
        // A block replaced by a different number of lines: pair lines from each end while the
        // secondary explains them; what is left in the middle is a real change.
        let (mut o, mut n) = (o, n);
        let mut tail = Vec::new();
        while !o.is_empty() && !n.is_empty() && self.explains_line(old, o.start, new[n.start]) {
            push(out, o.start..o.start + 1, n.start..n.start + 1, true);
            o.start += 1;
            n.start += 1;
        }
        while !o.is_empty() && !n.is_empty() && self.explains_line(old, o.end - 1, new[n.end - 1]) {
            o.end -= 1;
            n.end -= 1;
            tail.push((o.end..o.end + 1, n.end..n.end + 1));
        }
        if !o.is_empty() || !n.is_empty() {
            push(out, o, n, false);
        }
        for (o, n) in tail.into_iter().rev() {
            push(out, o, n, true);
        }
    }
}

/// Whether candidate line `c`, replacing primary line `p`, differs from it only where the
/// secondary's line `s` does (words: whitespace-separated).
fn compatible_line(p: &str, s: &str, c: &str) -> bool {
    let (pw, sw, cw) = (words(p), words(s), words(c));
    if pw.len() == sw.len() {
        return cw.len() == pw.len()
            && pw
                .iter()
                .zip(&sw)
                .zip(&cw)
                .all(|((p, s), c)| p == c || p != s);
    }
    // The secondary changed a stretch of words (its word count differs): the candidate must keep
    // the words before and after that stretch.
    let pre = pw.iter().zip(&sw).take_while(|(a, b)| a == b).count();
    let room = pw.len().min(sw.len()) - pre;
    let suf = pw
        .iter()
        .rev()
        .zip(sw.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    cw.len() >= pre + suf && cw[..pre] == pw[..pre] && cw[cw.len() - suf..] == pw[pw.len() - suf..]
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Groups changes into hunks: consecutive changes of the same kind (noise or real) whose gap of
/// unchanged lines is at most twice the context.
fn group(changes: &[Change]) -> Vec<Vec<Change>> {
    let mut hunks: Vec<Vec<Change>> = Vec::new();
    for ch in changes {
        match hunks.last_mut() {
            Some(h)
                if h[0].noise == ch.noise
                    && h.last()
                        .is_some_and(|l| ch.old.start - l.old.end <= 2 * CONTEXT) =>
            {
                h.push(ch.clone())
            }
            _ => hunks.push(vec![ch.clone()]),
        }
    }
    hunks
}

/// One hunk as a `body` difference, with its unified excerpt; `room`: the primary lines its
/// context may show (unchanged lines between the neighbouring hunks, which map one for one to
/// the candidate's).
fn render(old: &[&str], new: &[&str], hunk: &[Change], room: Range<usize>) -> Difference {
    let (first, last) = (&hunk[0], &hunk[hunk.len() - 1]);
    let before = (first.old.start - room.start).min(CONTEXT);
    let after = (room.end - last.old.end).min(CONTEXT);
    let (old_start, new_start) = (first.old.start - before, first.new.start - before);
    let (old_end, new_end) = (last.old.end + after, last.new.end + after);
    let mut detail = format!(
        "@@ -{},{} +{},{} @@\n",
        old_start + 1,
        old_end - old_start,
        new_start + 1,
        new_end - new_start
    );
    let (mut removed, mut added) = (String::new(), String::new());
    let line = |sign: char, text: &str, detail: &mut String| {
        if detail.len() < MAX_EXCERPT {
            detail.push(sign);
            detail.push_str(text);
            if !text.ends_with('\n') {
                detail.push_str("\n\\ No newline at end of file\n");
            }
        }
    };
    let mut at = old_start;
    for ch in hunk {
        for l in &old[at..ch.old.start] {
            line(' ', l, &mut detail);
        }
        for l in &old[ch.old.clone()] {
            removed.push_str(l);
            line('-', l, &mut detail);
        }
        for l in &new[ch.new.clone()] {
            added.push_str(l);
            line('+', l, &mut detail);
        }
        at = ch.old.end;
    }
    for l in &old[at..old_end] {
        line(' ', l, &mut detail);
    }
    if detail.len() > MAX_EXCERPT {
        let cut = detail.floor_char_boundary(MAX_EXCERPT);
        detail.truncate(cut);
        detail.push_str("…\n");
    }
    Difference {
        path: String::new(),
        field: String::new(),
        kind: DiffKind::Body,
        primary: Value::String(clip(removed)),
        candidate: Value::String(clip(added)),
        noise: first.noise,
        detail: Some(detail),
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

/// The single difference for two bodies that are not byte-identical but have no line diff
/// (binary, or line endings only). Noise only when the candidate's bytes are the secondary's.
pub fn binary_diff(p: &[u8], c: &[u8], secondary: Option<&[u8]>) -> Difference {
    Difference {
        path: String::new(),
        field: String::new(),
        kind: DiffKind::Body,
        primary: Value::String(describe_binary(p)),
        candidate: Value::String(describe_binary(c)),
        noise: secondary == Some(c),
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

#[cfg(test)]
mod tests;
