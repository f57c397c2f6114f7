//! Structural JSON diff under rules over two `serde_json::Value` trees: the **reference** walk.
//! The comparator runs its transcription onto scanned tapes (`compare/scan`), which builds no
//! trees; this walk is kept, under `#[cfg(test)]`, as what `scan/tests.rs` checks it against.
//! What both share lives here outside `cfg(test)`: the rules at a node, leaf equality on text,
//! difference records.
//!
//! One recursive walk over both trees; rule patterns are tracked with a [`Cursor`] so nodes no
//! rule touches cost a comparison and nothing else. Recursion depth is bounded by the parser's
//! nesting limit (serde_json: 128), so no input can overflow the stack here.

#[cfg(test)]
mod arrays;
mod record;
mod scalar;

pub use record::{excerpt, render};
pub(super) use scalar::{apply_rewrites, coerced, coerced_equal, hash_number, numbers_equal};
#[cfg(test)]
use scalar::{same_scalar, same_type, scalars_equal};

use super::pattern::Cursor;
use super::rules::{Action, Effective, Rewrite, Tolerance};
use smallvec::SmallVec;
#[cfg(test)]
use {
    super::pattern::PathSeg,
    super::{DiffKind, Difference},
    serde_json::{Map, Value},
};

/// Most pairs of leftover elements (after hash matching) tried for tolerance-aware pairing in
/// `unordered` arrays; beyond this, leftovers are reported as missing/added without pairing, so
/// the walk stays near-linear whatever the input.
pub(super) const MAX_PAIRING_WORK: usize = 4096;

/// Values larger than this many nodes are summarised in differences, not copied.
pub(super) const MAX_VALUE_NODES: usize = 64;
pub(super) const MAX_STRING_CHARS: usize = 1024;

/// What the rules ask at one node.
#[derive(Default)]
pub(super) struct NodeRules<'e> {
    pub ignore: bool,
    pub unordered: bool,
    pub keyed: Option<&'e str>,
    pub tolerance: Option<Tolerance>,
    pub coerce: bool,
    pub rewrites: SmallVec<[&'e Rewrite; 2]>,
}

/// The rules at the node `cur` stands at.
pub(super) fn node_rules<'e>(eff: &'e Effective, cur: &Cursor) -> NodeRules<'e> {
    let mut r = NodeRules::default();
    if cur.is_dead() {
        return r;
    }
    for i in cur.accepted(&eff.patterns) {
        match &eff.actions[i] {
            Action::Ignore => r.ignore = true,
            Action::Unordered => r.unordered = true,
            Action::Keyed(k) => r.keyed = Some(k.as_str()),
            Action::Tolerance(t) => r.tolerance = Some(*t),
            Action::Coerce => r.coerce = true,
            Action::Rewrite(rw) => r.rewrites.push(rw),
        }
    }
    r
}

/// Whether an `ignore` rule covers the node `cur` stands at.
pub(super) fn ignored(eff: &Effective, cur: &Cursor) -> bool {
    !cur.is_dead()
        && cur
            .accepted(&eff.patterns)
            .any(|i| matches!(eff.actions[i], Action::Ignore))
}

/// Tries to pair `x` (a row of `equal`), moving earlier pairs along an augmenting path; the
/// recursion is as deep as the matching is large, at most `sqrt(MAX_PAIRING_WORK)`.
pub(super) fn augment(
    x: usize,
    equal: &[bool],
    owner: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    let n = owner.len();
    for y in 0..n {
        if equal[x * n + y] && !seen[y] {
            seen[y] = true;
            if owner[y].is_none_or(|o| augment(o, equal, owner, seen)) {
                owner[y] = Some(x);
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
pub struct Walker<'e> {
    eff: &'e Effective,
    pub out: Vec<Difference>,
    cap: usize,
    pub truncated: bool,
    /// Equalities granted only approximately (a tolerance, a tolerance pairing): such subtrees
    /// are equal under the rules yet may hash differently, which `by_index` must know.
    approx: usize,
}

#[cfg(test)]
impl<'e> Walker<'e> {
    pub fn new(eff: &'e Effective, cap: usize) -> Self {
        Self {
            eff,
            out: Vec::new(),
            cap: cap.max(1),
            truncated: false,
            approx: 0,
        }
    }

    /// Diffs two documents from the root.
    pub fn diff(&mut self, p: &Value, c: &Value) {
        let cur = Cursor::start(&self.eff.patterns);
        let mut path = Vec::new();
        self.walk(p, c, &cur, &mut path);
    }

    fn rules_at(&self, cur: &Cursor) -> NodeRules<'e> {
        node_rules(self.eff, cur)
    }

    fn ignored(&self, cur: &Cursor) -> bool {
        ignored(self.eff, cur)
    }

    fn full(&mut self) -> bool {
        if self.out.len() >= self.cap {
            self.truncated = true;
            true
        } else {
            false
        }
    }

    fn push(
        &mut self,
        path: &[PathSeg<'_>],
        last: Option<PathSeg<'_>>,
        kind: DiffKind,
        p: Value,
        c: Value,
    ) {
        if self.full() {
            return;
        }
        let (path, field) = render(path, last);
        self.out.push(Difference {
            path,
            field,
            kind,
            primary: p,
            candidate: c,
            noise: false,
            detail: None,
        });
    }

    fn walk<'v>(&mut self, p: &'v Value, c: &'v Value, cur: &Cursor, path: &mut Vec<PathSeg<'v>>) {
        if self.full() {
            return;
        }
        let rules = self.rules_at(cur);
        if rules.ignore {
            return;
        }
        match (p, c) {
            (Value::Object(a), Value::Object(b)) => self.objects(a, b, cur, path),
            (Value::Array(a), Value::Array(b)) => {
                if let Some(key) = rules.keyed {
                    self.keyed(a, b, key, cur, path)
                } else if rules.unordered {
                    self.unordered(a, b, cur, path)
                } else {
                    self.by_index(a, b, cur, path)
                }
            }
            _ => {
                if scalars_equal(p, c, &rules) {
                    self.approx += usize::from(rules.tolerance.is_some() && p != c);
                } else {
                    let kind = if same_type(p, c, rules.coerce) {
                        DiffKind::Value
                    } else {
                        DiffKind::Type
                    };
                    self.push(path, None, kind, excerpt(p), excerpt(c));
                }
            }
        }
    }

    fn objects<'v>(
        &mut self,
        a: &'v Map<String, Value>,
        b: &'v Map<String, Value>,
        cur: &Cursor,
        path: &mut Vec<PathSeg<'v>>,
    ) {
        // serde_json's Map is a BTreeMap (no preserve_order): both iterate in key order, so a
        // merge visits each key once and key order in the documents never matters.
        let mut ia = a.iter().peekable();
        let mut ib = b.iter().peekable();
        loop {
            if self.full() {
                return;
            }
            let ord = match (ia.peek(), ib.peek()) {
                (None, None) => return,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.as_str().cmp(kb.as_str()),
            };
            match ord {
                std::cmp::Ordering::Equal => {
                    let (Some((k, va)), Some((_, vb))) = (ia.next(), ib.next()) else {
                        return;
                    };
                    if same_scalar(va, vb) {
                        continue;
                    }
                    let seg = PathSeg::Key(k);
                    let child = cur.step(&self.eff.patterns, seg);
                    path.push(seg);
                    self.walk(va, vb, &child, path);
                    path.pop();
                }
                std::cmp::Ordering::Less => {
                    let Some((k, va)) = ia.next() else { return };
                    let seg = PathSeg::Key(k);
                    if !self.ignored(&cur.step(&self.eff.patterns, seg)) {
                        self.push(path, Some(seg), DiffKind::Missing, excerpt(va), Value::Null);
                    }
                }
                std::cmp::Ordering::Greater => {
                    let Some((k, vb)) = ib.next() else { return };
                    let seg = PathSeg::Key(k);
                    if !self.eff.ignore_added && !self.ignored(&cur.step(&self.eff.patterns, seg)) {
                        self.push(path, Some(seg), DiffKind::Added, Value::Null, excerpt(vb));
                    }
                }
            }
        }
    }
}
