//! The structural JSON diff at scan speed: each body is scanned once into a flat tape
//! ([`tape`]) and both tapes are walked together, matching object keys per object. No
//! `serde_json::Value` tree is built: a `Value` is made only for what a difference carries.
//!
//! The walk is the reference walk of `compare/json` (kept under `#[cfg(test)]`) transcribed
//! onto tape nodes, step for step — the same rule lookups, shortcuts, truncation points and
//! order checks — so both produce identical differences; `scan/tests.rs` checks that on seeded
//! random pairs and rule sets. What the tape adds: subtrees whose bytes are identical are
//! skipped whole (no rule can make a value differ from itself), and strings and numbers are
//! compared on their bytes unless escapes or exponent spellings need a closer look.

mod arrays;
mod tape;
mod value;

#[cfg(test)]
mod tests;

use super::json::{NodeRules, node_rules, render};
use super::json::{apply_rewrites, coerced, coerced_equal, numbers_equal};
use super::pattern::{Cursor, PathSeg};
use super::rules::Effective;
use super::{DiffKind, Difference};
use serde_json::Value;
use smallvec::SmallVec;
use std::borrow::Cow;
pub(super) use tape::Tape;
use tape::{Kind, Node};
use value::{Member, Scalar};

/// Scans a body for the comparator: `Err` carries serde_json's own error, so notes read as
/// before. Should the scanner ever refuse what serde_json accepts, serde_json's parse is
/// re-serialised into `spare` and scanned instead: the body is still compared as JSON.
pub(super) fn scan<'a>(b: &'a [u8], spare: &'a mut Vec<u8>) -> Result<Tape<'a>, serde_json::Error> {
    if let Some(t) = Tape::scan(b) {
        return Ok(t);
    }
    let v: Value = serde_json::from_slice(b)?;
    tracing::warn!(
        bytes = b.len(),
        "JSON scanner refused a body serde_json accepts"
    );
    *spare = serde_json::to_vec(&v)?;
    Tape::scan(spare).ok_or_else(|| {
        <serde_json::Error as serde::de::Error>::custom("re-serialised body does not scan")
    })
}

/// Diffs two scanned documents from the root: the differences (at most `cap`) and whether more
/// existed.
pub(super) fn diff(
    eff: &Effective,
    p: &Tape<'_>,
    c: &Tape<'_>,
    cap: usize,
) -> (Vec<Difference>, bool) {
    let mut w = Walker::new(eff, p, c, cap);
    let cur = Cursor::start(&eff.patterns);
    w.walk(0, 0, &cur, &mut Vec::new());
    (w.out, w.truncated)
}

/// One step of the concrete path: a key (by its node, on the primary or the candidate tape,
/// decoded only when a difference is rendered) or an index.
#[derive(Clone, Copy)]
enum Seg {
    Key { candidate: bool, node: u32 },
    Index(usize),
}

struct Walker<'e, 't, 'a> {
    eff: &'e Effective,
    p: &'t Tape<'a>,
    c: &'t Tape<'a>,
    out: Vec<Difference>,
    cap: usize,
    truncated: bool,
    /// As in the reference: equalities granted only approximately (a tolerance, a tolerance
    /// pairing), which `by_index` must know.
    approx: usize,
    /// Reused member lists, so objects cost no allocation.
    members: Vec<Vec<Member<'a>>>,
    elems: Vec<Vec<u32>>,
}

impl<'e, 't, 'a> Walker<'e, 't, 'a> {
    fn new(eff: &'e Effective, p: &'t Tape<'a>, c: &'t Tape<'a>, cap: usize) -> Self {
        Self {
            eff,
            p,
            c,
            out: Vec::new(),
            cap: cap.max(1),
            truncated: false,
            approx: 0,
            members: Vec::new(),
            elems: Vec::new(),
        }
    }

    fn rules_at(&self, cur: &Cursor) -> NodeRules<'e> {
        node_rules(self.eff, cur)
    }

    fn ignored(&self, cur: &Cursor) -> bool {
        super::json::ignored(self.eff, cur)
    }

    fn step(&self, cur: &Cursor, seg: PathSeg<'_>) -> Cursor {
        cur.step(&self.eff.patterns, seg)
    }

    fn full(&mut self) -> bool {
        if self.out.len() >= self.cap {
            self.truncated = true;
            true
        } else {
            false
        }
    }

    /// Records a difference; its values are made only when it is kept.
    fn push(
        &mut self,
        path: &[Seg],
        last: Option<Seg>,
        kind: DiffKind,
        values: impl FnOnce() -> (Value, Value),
    ) {
        if self.full() {
            return;
        }
        let segs: SmallVec<[Seg; 16]> = path.iter().copied().chain(last).collect();
        let keys: SmallVec<[Cow<'a, str>; 16]> = segs
            .iter()
            .map(|s| match *s {
                Seg::Key { candidate, node } => {
                    if candidate { self.c } else { self.p }.string(node)
                }
                Seg::Index(_) => Cow::Borrowed(""),
            })
            .collect();
        let rendered: SmallVec<[PathSeg<'_>; 16]> = segs
            .iter()
            .zip(&keys)
            .map(|(s, k)| match *s {
                Seg::Key { .. } => PathSeg::Key(k),
                Seg::Index(i) => PathSeg::Index(i),
            })
            .collect();
        let (path, field) = render(&rendered, None);
        let (primary, candidate) = values();
        self.out.push(Difference {
            path,
            field,
            kind,
            primary,
            candidate,
            noise: false,
            detail: None,
        });
    }

    /// Identical scalars (the reference's `same_scalar`): skipped without stepping the cursor.
    fn same_scalar(&self, pi: u32, ci: u32) -> bool {
        let (a, b) = (self.p.node(pi), self.c.node(ci));
        match (a.kind, b.kind) {
            (Kind::Null, Kind::Null) | (Kind::True, Kind::True) | (Kind::False, Kind::False) => {
                true
            }
            (Kind::Number, Kind::Number) => {
                self.p.raw(pi) == self.c.raw(ci) || self.p.number(pi) == self.c.number(ci)
            }
            (Kind::Str, Kind::Str) => self.p.raw(pi) == self.c.raw(ci),
            (Kind::Str | Kind::StrEsc, Kind::Str | Kind::StrEsc) => {
                self.p.string(pi) == self.c.string(ci)
            }
            _ => false,
        }
    }

    /// Containers whose bytes are identical: equal under any rules, with nothing to report.
    fn same_bytes(&self, a: &Node, b: &Node) -> bool {
        a.len == b.len && self.p.raw_span(a) == self.c.raw_span(b)
    }

    fn walk(&mut self, pi: u32, ci: u32, cur: &Cursor, path: &mut Vec<Seg>) {
        if self.full() {
            return;
        }
        let rules = self.rules_at(cur);
        if rules.ignore {
            return;
        }
        let (a, b) = (*self.p.node(pi), *self.c.node(ci));
        match (a.kind, b.kind) {
            (Kind::Object, Kind::Object) => {
                if !self.same_bytes(&a, &b) {
                    self.objects(pi, ci, cur, path);
                }
            }
            (Kind::Array, Kind::Array) => {
                if self.same_bytes(&a, &b) {
                } else if let Some(key) = rules.keyed {
                    self.keyed(pi, ci, key, cur, path)
                } else if rules.unordered {
                    self.unordered(pi, ci, cur, path)
                } else {
                    self.by_index(pi, ci, cur, path)
                }
            }
            _ => {
                let (x, y) = (self.p.scalar(pi), self.c.scalar(ci));
                if scalars_equal(&x, &y, &rules) {
                    self.approx +=
                        usize::from(rules.tolerance.is_some() && !self.same_scalar(pi, ci));
                } else {
                    let kind = if same_type(&x, &y, a.kind, b.kind, rules.coerce) {
                        DiffKind::Value
                    } else {
                        DiffKind::Type
                    };
                    let (pt, ct) = (self.p, self.c);
                    self.push(path, None, kind, || (pt.excerpt(pi), ct.excerpt(ci)));
                }
            }
        }
    }

    fn objects(&mut self, pi: u32, ci: u32, cur: &Cursor, path: &mut Vec<Seg>) {
        let mut a = self.members.pop().unwrap_or_default();
        let mut b = self.members.pop().unwrap_or_default();
        self.p.members(pi, &mut a);
        self.c.members(ci, &mut b);
        let (pt, ct) = (self.p, self.c);
        // Both lists are in key order, as serde_json's maps iterate: a merge visits each key once.
        let (mut x, mut y) = (0, 0);
        loop {
            if self.full() {
                break;
            }
            let ord = match (a.get(x), b.get(y)) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(ka), Some(kb)) => ka.key.as_ref().cmp(kb.key.as_ref()),
            };
            match ord {
                std::cmp::Ordering::Equal => {
                    let (ma, mb) = (&a[x], &b[y]);
                    x += 1;
                    y += 1;
                    if self.same_scalar(ma.value, mb.value) {
                        continue;
                    }
                    let child = self.step(cur, PathSeg::Key(&ma.key));
                    path.push(Seg::Key {
                        candidate: false,
                        node: ma.key_node,
                    });
                    self.walk(ma.value, mb.value, &child, path);
                    path.pop();
                }
                std::cmp::Ordering::Less => {
                    let m = &a[x];
                    x += 1;
                    if !self.ignored(&self.step(cur, PathSeg::Key(&m.key))) {
                        let last = Seg::Key {
                            candidate: false,
                            node: m.key_node,
                        };
                        let v = m.value;
                        self.push(path, Some(last), DiffKind::Missing, || {
                            (pt.excerpt(v), Value::Null)
                        });
                    }
                }
                std::cmp::Ordering::Greater => {
                    let m = &b[y];
                    y += 1;
                    if !self.eff.ignore_added
                        && !self.ignored(&self.step(cur, PathSeg::Key(&m.key)))
                    {
                        let last = Seg::Key {
                            candidate: true,
                            node: m.key_node,
                        };
                        let v = m.value;
                        self.push(path, Some(last), DiffKind::Added, || {
                            (Value::Null, ct.excerpt(v))
                        });
                    }
                }
            }
        }
        self.members.push(a);
        self.members.push(b);
    }
}

/// The reference's `scalars_equal` on tape scalars (`None`: a container).
fn scalars_equal(p: &Option<Scalar<'_>>, c: &Option<Scalar<'_>>, rules: &NodeRules<'_>) -> bool {
    let (Some(p), Some(c)) = (p, c) else {
        return false;
    };
    match (p, c) {
        (Scalar::Null, Scalar::Null) => true,
        (Scalar::Bool(x), Scalar::Bool(y)) => x == y,
        (Scalar::Num(x), Scalar::Num(y)) => numbers_equal(x, y, rules.tolerance),
        (Scalar::Str(x), Scalar::Str(y)) => {
            if rules.rewrites.is_empty() {
                x == y || (rules.coerce && coerced_equal(x, y, rules.tolerance))
            } else {
                let (x, y) = (
                    apply_rewrites(x, &rules.rewrites),
                    apply_rewrites(y, &rules.rewrites),
                );
                x == y || (rules.coerce && coerced_equal(&x, &y, rules.tolerance))
            }
        }
        (Scalar::Str(s), other) | (other, Scalar::Str(s)) if rules.coerce => {
            let s = apply_rewrites(s, &rules.rewrites);
            match (coerced(&s), other) {
                (Some(Value::Number(n)), Scalar::Num(m)) => {
                    numbers_equal(n.as_str(), m, rules.tolerance)
                }
                (Some(Value::Bool(b)), Scalar::Bool(c)) => b == *c,
                _ => false,
            }
        }
        _ => false,
    }
}

/// The reference's `same_type`.
fn same_type(
    p: &Option<Scalar<'_>>,
    c: &Option<Scalar<'_>>,
    pk: Kind,
    ck: Kind,
    coerce: bool,
) -> bool {
    let t = |k: Kind| match k {
        Kind::Null => 0,
        Kind::False | Kind::True => 1,
        Kind::Number => 2,
        Kind::Str | Kind::StrEsc => 3,
        Kind::Array => 4,
        Kind::Object => 5,
    };
    if t(pk) == t(ck) {
        return true;
    }
    coerce
        && matches!(
            (p, c),
            (Some(Scalar::Str(_)), Some(Scalar::Num(_) | Scalar::Bool(_)))
                | (Some(Scalar::Num(_) | Scalar::Bool(_)), Some(Scalar::Str(_)))
        )
}
