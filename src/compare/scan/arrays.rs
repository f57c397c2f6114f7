//! Arrays on tapes, as the reference walk treats them (`compare/json/arrays.rs`): by index with
//! the order check, as a multiset (`unordered`) and by key (`keyed`). Canonical hashes are taken
//! on the tape, so no rule needs a `Value` tree either.

use super::tape::{Kind, Tape};
use super::{Seg, Walker};
use crate::compare::DiffKind;
use crate::compare::json::{MAX_PAIRING_WORK, apply_rewrites, augment, coerced, hash_number};
use crate::compare::pattern::{Cursor, PathSeg};
use serde_json::Value;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

impl<'a> Walker<'_, '_, 'a> {
    fn elements(&mut self, t: &Tape<'a>, i: u32) -> Vec<u32> {
        let mut v = self.elems.pop().unwrap_or_default();
        t.elements(i, &mut v);
        v
    }

    pub(super) fn by_index(&mut self, pi: u32, ci: u32, cur: &Cursor, path: &mut Vec<Seg>) {
        let (pt, ct) = (self.p, self.c);
        let a = self.elements(pt, pi);
        let b = self.elements(ct, ci);
        let before = self.out.len();
        let was_truncated = self.truncated;
        let common = a.len().min(b.len());
        let mut differing: SmallVec<[usize; 8]> = SmallVec::new();
        let mut walked = 0;
        for i in 0..common {
            if self.full() {
                break;
            }
            walked += 1;
            if self.same_scalar(a[i], b[i]) {
                continue;
            }
            let child = self.step(cur, PathSeg::Index(i));
            let (n, approx) = (self.out.len(), self.approx);
            path.push(Seg::Index(i));
            self.walk(a[i], b[i], &child, path);
            path.pop();
            if self.out.len() != n || self.approx != approx || self.ignored(&child) {
                differing.push(i);
            }
        }
        let only = (walked == common && !self.eff.ignore_added).then_some(&differing[..]);
        if a.len() == b.len() && self.out.len() > before && self.same_multiset(&a, &b, cur, only) {
            self.out.truncate(before);
            self.truncated = was_truncated;
            self.push(path, None, DiffKind::Order, || {
                (pt.excerpt_array(pi), ct.excerpt_array(ci))
            });
        } else {
            let mut extra = false;
            for (i, &v) in a.iter().enumerate().skip(common) {
                if !self.ignored(&self.step(cur, PathSeg::Index(i))) {
                    self.push(path, Some(Seg::Index(i)), DiffKind::Missing, || {
                        (pt.excerpt(v), Value::Null)
                    });
                    extra = true;
                }
            }
            if !self.eff.ignore_added {
                for (i, &v) in b.iter().enumerate().skip(common) {
                    if !self.ignored(&self.step(cur, PathSeg::Index(i))) {
                        self.push(path, Some(Seg::Index(i)), DiffKind::Added, || {
                            (Value::Null, ct.excerpt(v))
                        });
                        extra = true;
                    }
                }
            }
            if extra {
                let (na, nb) = (a.len(), b.len());
                self.push(path, None, DiffKind::Length, || {
                    (Value::from(na), Value::from(nb))
                });
            }
        }
        self.elems.push(a);
        self.elems.push(b);
    }

    /// Whether `a` and `b` hold the same elements under the rules; with `only`, the indices
    /// outside it are known to hash equal on both sides.
    fn same_multiset(&self, a: &[u32], b: &[u32], cur: &Cursor, only: Option<&[usize]>) -> bool {
        let all: Vec<usize>;
        let idx = match only {
            Some(idx) => idx,
            None => {
                all = (0..a.len()).collect();
                &all
            }
        };
        let mut ha: Vec<u64> = idx
            .iter()
            .map(|&i| self.hash_elem(self.p, a[i], cur, i))
            .collect();
        ha.sort_unstable();
        let mut hb = Vec::with_capacity(idx.len());
        for &i in idx {
            let h = self.hash_elem(self.c, b[i], cur, i);
            if ha.binary_search(&h).is_err() {
                return false;
            }
            hb.push(h);
        }
        hb.sort_unstable();
        ha == hb
    }

    fn hash_elem(&self, t: &Tape<'a>, v: u32, cur: &Cursor, i: usize) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.canon_hash(t, v, &self.step(cur, PathSeg::Index(i)), &mut h);
        h.finish()
    }

    /// The reference's `canon_hash`, on a tape node: ignored parts left out, rewrites and
    /// coercions applied, numbers by value, unordered and keyed arrays independent of order.
    fn canon_hash<H: Hasher>(&self, t: &Tape<'a>, v: u32, cur: &Cursor, h: &mut H) {
        let rules = self.rules_at(cur);
        match t.node(v).kind {
            Kind::Null => h.write_u8(0),
            Kind::False | Kind::True => {
                h.write_u8(1);
                (t.node(v).kind == Kind::True).hash(h);
            }
            Kind::Number => hash_number(&t.number(v), h),
            Kind::Str | Kind::StrEsc => {
                let s = t.string(v);
                let s = apply_rewrites(&s, &rules.rewrites);
                if rules.coerce
                    && let Some(c) = coerced(&s)
                {
                    match c {
                        Value::Number(n) => return hash_number(n.as_str(), h),
                        Value::Bool(b) => {
                            h.write_u8(1);
                            return b.hash(h);
                        }
                        _ => {}
                    }
                }
                h.write_u8(3);
                s.hash(h);
            }
            Kind::Array => {
                h.write_u8(4);
                let hashes = t.children(v).enumerate().filter_map(|(i, x)| {
                    let child = self.step(cur, PathSeg::Index(i));
                    if self.ignored(&child) {
                        return None;
                    }
                    let mut sub = std::collections::hash_map::DefaultHasher::new();
                    self.canon_hash(t, x, &child, &mut sub);
                    Some(sub.finish())
                });
                if rules.unordered || rules.keyed.is_some() {
                    let mut v: Vec<u64> = hashes.collect();
                    v.sort_unstable();
                    v.hash(h);
                } else {
                    for x in hashes {
                        h.write_u64(x);
                    }
                }
            }
            Kind::Object => {
                h.write_u8(5);
                let mut m = Vec::new();
                t.members(v, &mut m);
                for x in &m {
                    let child = self.step(cur, PathSeg::Key(&x.key));
                    if self.ignored(&child) {
                        continue;
                    }
                    x.key.as_ref().hash(h);
                    self.canon_hash(t, x.value, &child, h);
                }
                h.write_u8(6);
            }
        }
    }

    /// Whether two values are equal under the rules (a diff that stops at the first difference).
    fn equal_under_rules(&self, a: u32, b: u32, cur: &Cursor) -> bool {
        let mut w = Walker::new(self.eff, self.p, self.c, 1);
        w.walk(a, b, cur, &mut Vec::new());
        w.out.is_empty()
    }

    /// Multiset comparison, as the reference: pairs by canonical hash, then a bounded matching
    /// of the leftovers equal only within a tolerance; the rest are missing/added.
    pub(super) fn unordered(&mut self, pi: u32, ci: u32, cur: &Cursor, path: &[Seg]) {
        let (pt, ct) = (self.p, self.c);
        let a = self.elements(pt, pi);
        let b = self.elements(ct, ci);
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::with_capacity(a.len());
        for i in (0..a.len()).rev() {
            by_hash
                .entry(self.hash_elem(pt, a[i], cur, i))
                .or_default()
                .push(i);
        }
        let mut left_b = Vec::new();
        for (j, &elem) in b.iter().enumerate() {
            match by_hash
                .get_mut(&self.hash_elem(ct, elem, cur, j))
                .and_then(|v| v.pop())
            {
                Some(_) => {}
                None => left_b.push(j),
            }
        }
        let mut left_a: Vec<usize> = by_hash.into_values().flatten().collect();
        left_a.sort_unstable();
        let unpaired = left_a.len();
        self.pair_leftovers(&a, &b, &mut left_a, &mut left_b, cur);
        self.approx += unpaired - left_a.len();
        self.report_leftovers(&a, &b, &left_a, &left_b, cur, path);
        self.elems.push(a);
        self.elems.push(b);
    }

    /// The reference's maximum matching of leftovers equal under the rules, bounded by
    /// [`MAX_PAIRING_WORK`] comparisons.
    fn pair_leftovers(
        &self,
        a: &[u32],
        b: &[u32],
        left_a: &mut Vec<usize>,
        left_b: &mut Vec<usize>,
        cur: &Cursor,
    ) {
        if left_a.is_empty()
            || left_b.is_empty()
            || left_a.len().saturating_mul(left_b.len()) > MAX_PAIRING_WORK
        {
            return;
        }
        let n = left_b.len();
        let mut equal = Vec::with_capacity(left_a.len() * n);
        for &i in left_a.iter() {
            let child = self.step(cur, PathSeg::Index(i));
            equal.extend(
                left_b
                    .iter()
                    .map(|&j| self.equal_under_rules(a[i], b[j], &child)),
            );
        }
        let mut owner: Vec<Option<usize>> = vec![None; n];
        let mut seen = vec![false; n];
        for x in 0..left_a.len() {
            seen.fill(false);
            augment(x, &equal, &mut owner, &mut seen);
        }
        let mut paired_a = vec![false; left_a.len()];
        for x in owner.iter().flatten() {
            paired_a[*x] = true;
        }
        let mut x = 0;
        left_a.retain(|_| {
            x += 1;
            !paired_a[x - 1]
        });
        let mut y = 0;
        left_b.retain(|_| {
            y += 1;
            owner[y - 1].is_none()
        });
    }

    fn report_leftovers(
        &mut self,
        a: &[u32],
        b: &[u32],
        left_a: &[usize],
        left_b: &[usize],
        cur: &Cursor,
        path: &[Seg],
    ) {
        let (pt, ct) = (self.p, self.c);
        for &i in left_a {
            if !self.ignored(&self.step(cur, PathSeg::Index(i))) {
                let v = a[i];
                self.push(path, Some(Seg::Index(i)), DiffKind::Missing, || {
                    (pt.excerpt(v), Value::Null)
                });
            }
        }
        if !self.eff.ignore_added {
            for &j in left_b {
                if !self.ignored(&self.step(cur, PathSeg::Index(j))) {
                    let v = b[j];
                    self.push(path, Some(Seg::Index(j)), DiffKind::Added, || {
                        (Value::Null, ct.excerpt(v))
                    });
                }
            }
        }
    }

    /// Keyed arrays, as the reference: elements pair by the value of `key` (in order of
    /// occurrence for duplicates), compared at the primary element's index.
    pub(super) fn keyed(&mut self, pi: u32, ci: u32, key: &str, cur: &Cursor, path: &mut Vec<Seg>) {
        let (pt, ct) = (self.p, self.c);
        let a = self.elements(pt, pi);
        let b = self.elements(ct, ci);
        let key_hash = |t: &Tape<'a>, v: u32| -> Option<u64> {
            let k = t.get(v, key)?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.canon_hash(t, k, &Cursor::default(), &mut h);
            Some(h.finish())
        };
        let mut by_key: HashMap<Option<u64>, std::collections::VecDeque<usize>> =
            HashMap::with_capacity(a.len());
        for (i, &v) in a.iter().enumerate() {
            by_key.entry(key_hash(pt, v)).or_default().push_back(i);
        }
        let mut pairs = Vec::new();
        let mut left_b = Vec::new();
        for (j, &v) in b.iter().enumerate() {
            match by_key.get_mut(&key_hash(ct, v)).and_then(|q| q.pop_front()) {
                Some(i) => pairs.push((i, j)),
                None => left_b.push(j),
            }
        }
        pairs.sort_unstable();
        let mut full = false;
        for (i, j) in pairs {
            if self.full() {
                full = true;
                break;
            }
            let child = self.step(cur, PathSeg::Index(i));
            path.push(Seg::Index(i));
            self.walk(a[i], b[j], &child, path);
            path.pop();
        }
        if !full {
            let mut left_a: Vec<usize> = by_key.into_values().flatten().collect();
            left_a.sort_unstable();
            self.report_leftovers(&a, &b, &left_a, &left_b, cur, path);
        }
        self.elems.push(a);
        self.elems.push(b);
    }
}
