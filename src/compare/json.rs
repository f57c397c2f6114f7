//! Structural JSON diff under rules. One recursive walk over both trees; rule patterns are
//! tracked with a [`Cursor`] so nodes no rule touches cost a comparison and nothing else.
//! Recursion depth is bounded by the parser's nesting limit (serde_json: 128), so no input can
//! overflow the stack here.

mod arrays;
mod record;
mod scalar;

pub use record::{excerpt, render};
use scalar::{same_scalar, same_type, scalars_equal};

use super::pattern::{Cursor, PathSeg};
use super::rules::{Action, Effective, Rewrite, Tolerance};
use super::{DiffKind, Difference};
use serde_json::{Map, Value};
use smallvec::SmallVec;

/// Most pairs of leftover elements (after hash matching) tried for tolerance-aware pairing in
/// `unordered` arrays; beyond this, leftovers are reported as missing/added without pairing, so
/// the walk stays near-linear whatever the input.
const MAX_PAIRING_WORK: usize = 4096;

/// Values larger than this many nodes are summarised in differences, not copied.
const MAX_VALUE_NODES: usize = 64;
const MAX_STRING_CHARS: usize = 1024;

/// What the rules ask at one node.
#[derive(Default)]
struct NodeRules<'e> {
    ignore: bool,
    unordered: bool,
    keyed: Option<&'e str>,
    tolerance: Option<Tolerance>,
    coerce: bool,
    rewrites: SmallVec<[&'e Rewrite; 2]>,
}

pub struct Walker<'e> {
    eff: &'e Effective,
    pub out: Vec<Difference>,
    cap: usize,
    pub truncated: bool,
    /// Equalities granted only approximately (a tolerance, a tolerance pairing): such subtrees
    /// are equal under the rules yet may hash differently, which `by_index` must know.
    approx: usize,
}

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
        let mut r = NodeRules::default();
        if cur.is_dead() {
            return r;
        }
        let eff: &'e Effective = self.eff;
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

    fn ignored(&self, cur: &Cursor) -> bool {
        !cur.is_dead()
            && cur
                .accepted(&self.eff.patterns)
                .any(|i| matches!(self.eff.actions[i], Action::Ignore))
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
