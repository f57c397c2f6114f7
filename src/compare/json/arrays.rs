//! Arrays in the walk: by index (common prefix, then `missing`/`added` and one `length`, or one
//! `order` when only the order differs), as a multiset (`unordered`: canonical hashes under the
//! rules, then a bounded maximum matching of the leftovers equal only within a tolerance) and by key (`keyed`).

use super::record::excerpt_array;
use super::scalar::{apply_rewrites, coerced, hash_number, same_scalar};
use super::{MAX_PAIRING_WORK, Walker, augment, excerpt};
use crate::compare::DiffKind;
use crate::compare::pattern::{Cursor, PathSeg};
use serde_json::Value;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

impl<'e> Walker<'e> {
    pub(super) fn by_index<'v>(
        &mut self,
        a: &'v [Value],
        b: &'v [Value],
        cur: &Cursor,
        path: &mut Vec<PathSeg<'v>>,
    ) {
        let before = self.out.len();
        let was_truncated = self.truncated;
        let common = a.len().min(b.len());
        // Elements walked without a difference (exactly, and not ignored as a whole) hash equal,
        // so the order check below need only hash the others: `differing`, if the walk finished.
        let mut differing: SmallVec<[usize; 8]> = SmallVec::new();
        let mut walked = 0;
        for i in 0..common {
            if self.full() {
                break;
            }
            walked += 1;
            if same_scalar(&a[i], &b[i]) {
                continue;
            }
            let seg = PathSeg::Index(i);
            let child = cur.step(&self.eff.patterns, seg);
            let (n, approx) = (self.out.len(), self.approx);
            path.push(seg);
            self.walk(&a[i], &b[i], &child, path);
            path.pop();
            if self.out.len() != n || self.approx != approx || self.ignored(&child) {
                differing.push(i);
            }
        }
        let only = (walked == common && !self.eff.ignore_added).then_some(&differing[..]);
        // Same elements in another order is one `order` difference, not one per shifted index.
        if a.len() == b.len() && self.out.len() > before && self.same_multiset(a, b, cur, only) {
            self.out.truncate(before);
            self.truncated = was_truncated;
            self.push(
                path,
                None,
                DiffKind::Order,
                excerpt_array(a),
                excerpt_array(b),
            );
            return;
        }
        let mut extra = false;
        for (i, v) in a.iter().enumerate().skip(common) {
            if !self.ignored(&cur.step(&self.eff.patterns, PathSeg::Index(i))) {
                self.push(
                    path,
                    Some(PathSeg::Index(i)),
                    DiffKind::Missing,
                    excerpt(v),
                    Value::Null,
                );
                extra = true;
            }
        }
        if !self.eff.ignore_added {
            for (i, v) in b.iter().enumerate().skip(common) {
                if !self.ignored(&cur.step(&self.eff.patterns, PathSeg::Index(i))) {
                    self.push(
                        path,
                        Some(PathSeg::Index(i)),
                        DiffKind::Added,
                        Value::Null,
                        excerpt(v),
                    );
                    extra = true;
                }
            }
        }
        if extra {
            self.push(
                path,
                None,
                DiffKind::Length,
                Value::from(a.len()),
                Value::from(b.len()),
            );
        }
    }

    /// Whether `a` and `b` hold the same elements under the rules; with `only`, the indices
    /// outside it are known to hash equal on both sides, so they cancel out.
    pub(super) fn same_multiset(
        &self,
        a: &[Value],
        b: &[Value],
        cur: &Cursor,
        only: Option<&[usize]>,
    ) -> bool {
        let all: Vec<usize>;
        let idx = match only {
            Some(idx) => idx,
            None => {
                all = (0..a.len()).collect();
                &all
            }
        };
        let mut ha: Vec<u64> = idx.iter().map(|&i| self.hash_elem(&a[i], cur, i)).collect();
        ha.sort_unstable();
        // Usually the arrays differ in place, not in order: the first element of `b` that `a`
        // does not hold ends the check, before the rest of `b` is hashed.
        let mut hb = Vec::with_capacity(idx.len());
        for &i in idx {
            let h = self.hash_elem(&b[i], cur, i);
            if ha.binary_search(&h).is_err() {
                return false;
            }
            hb.push(h);
        }
        hb.sort_unstable();
        ha == hb
    }

    pub(super) fn hash_elem(&self, v: &Value, cur: &Cursor, i: usize) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.canon_hash(v, &cur.step(&self.eff.patterns, PathSeg::Index(i)), &mut h);
        h.finish()
    }

    /// Hashes a value as the rules see it: ignored parts left out, rewrites and coercions applied,
    /// numbers by value, unordered and keyed arrays independent of order. Equal hashes mean equal
    /// under the rules (up to 64-bit collisions); tolerances are not hashable and are handled by
    /// the pairing pass in [`Self::unordered`].
    pub(super) fn canon_hash<H: Hasher>(&self, v: &Value, cur: &Cursor, h: &mut H) {
        let rules = self.rules_at(cur);
        match v {
            Value::Null => h.write_u8(0),
            Value::Bool(b) => {
                h.write_u8(1);
                b.hash(h);
            }
            Value::Number(n) => hash_number(n.as_str(), h),
            Value::String(s) => {
                let s = apply_rewrites(s, &rules.rewrites);
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
            Value::Array(items) => {
                h.write_u8(4);
                let hashes = items.iter().enumerate().filter_map(|(i, x)| {
                    let child = cur.step(&self.eff.patterns, PathSeg::Index(i));
                    if self.ignored(&child) {
                        return None;
                    }
                    let mut sub = std::collections::hash_map::DefaultHasher::new();
                    self.canon_hash(x, &child, &mut sub);
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
            Value::Object(m) => {
                h.write_u8(5);
                for (k, x) in m {
                    let child = cur.step(&self.eff.patterns, PathSeg::Key(k));
                    if self.ignored(&child) {
                        continue;
                    }
                    k.hash(h);
                    self.canon_hash(x, &child, h);
                }
                h.write_u8(6);
            }
        }
    }

    /// Whether two values are equal under the rules (a diff that stops at the first difference).
    pub(super) fn equal_under_rules(&self, a: &Value, b: &Value, cur: &Cursor) -> bool {
        let mut w = Walker::new(self.eff, 1);
        let mut path = Vec::new();
        w.walk(a, b, cur, &mut path);
        w.out.is_empty()
    }

    /// Multiset comparison: elements pair by canonical hash in O(n); leftovers that are equal only
    /// within a tolerance are paired by a bounded search; the rest are missing/added.
    pub(super) fn unordered<'v>(
        &mut self,
        a: &'v [Value],
        b: &'v [Value],
        cur: &Cursor,
        path: &mut Vec<PathSeg<'v>>,
    ) {
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::with_capacity(a.len());
        for i in (0..a.len()).rev() {
            by_hash
                .entry(self.hash_elem(&a[i], cur, i))
                .or_default()
                .push(i);
        }
        let mut left_b = Vec::new();
        for (j, elem) in b.iter().enumerate() {
            match by_hash
                .get_mut(&self.hash_elem(elem, cur, j))
                .and_then(|v| v.pop())
            {
                Some(_) => {}
                None => left_b.push(j),
            }
        }
        let mut left_a: Vec<usize> = by_hash.into_values().flatten().collect();
        left_a.sort_unstable();
        let unpaired = left_a.len();
        self.pair_leftovers(a, b, &mut left_a, &mut left_b, cur);
        self.approx += unpaired - left_a.len();
        self.report_leftovers(a, b, &left_a, &left_b, cur, path);
    }

    /// Pairs leftovers equal under the rules (within a tolerance, say) by a maximum matching.
    /// Greedy pairing is not enough: such equality is not transitive, so taking the first equal
    /// element can leave another without its only partner (within 0.5, `[5, 5.55]` against
    /// `[5.425, 4.875]` pairs 5 with 5.425 first and reports 5.55, found by the `compare` fuzz
    /// target). At most [`MAX_PAIRING_WORK`] comparisons; the matching itself costs less.
    fn pair_leftovers(
        &self,
        a: &[Value],
        b: &[Value],
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
            let child = cur.step(&self.eff.patterns, PathSeg::Index(i));
            equal.extend(
                left_b
                    .iter()
                    .map(|&j| self.equal_under_rules(&a[i], &b[j], &child)),
            );
        }
        // Kuhn's augmenting paths: `owner[y]` is the leftover of `a` paired with `left_b[y]`.
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

    fn report_leftovers<'v>(
        &mut self,
        a: &'v [Value],
        b: &'v [Value],
        left_a: &[usize],
        left_b: &[usize],
        cur: &Cursor,
        path: &mut Vec<PathSeg<'v>>,
    ) {
        for &i in left_a {
            if !self.ignored(&cur.step(&self.eff.patterns, PathSeg::Index(i))) {
                self.push(
                    path,
                    Some(PathSeg::Index(i)),
                    DiffKind::Missing,
                    excerpt(&a[i]),
                    Value::Null,
                );
            }
        }
        if !self.eff.ignore_added {
            for &j in left_b {
                if !self.ignored(&cur.step(&self.eff.patterns, PathSeg::Index(j))) {
                    self.push(
                        path,
                        Some(PathSeg::Index(j)),
                        DiffKind::Added,
                        Value::Null,
                        excerpt(&b[j]),
                    );
                }
            }
        }
    }

    /// Keyed arrays: elements pair by the value of `key` (in order of occurrence for duplicate
    /// keys); paired ones are compared at the primary element's index. Elements without the key
    /// pair with each other in order.
    pub(super) fn keyed<'v>(
        &mut self,
        a: &'v [Value],
        b: &'v [Value],
        key: &str,
        cur: &Cursor,
        path: &mut Vec<PathSeg<'v>>,
    ) {
        let key_hash = |v: &Value| -> Option<u64> {
            let k = v.as_object()?.get(key)?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            // Key values compare by value like everything else (1 and 1.0 are the same key).
            self.canon_hash(k, &Cursor::default(), &mut h);
            Some(h.finish())
        };
        let mut by_key: HashMap<Option<u64>, std::collections::VecDeque<usize>> =
            HashMap::with_capacity(a.len());
        for (i, v) in a.iter().enumerate() {
            by_key.entry(key_hash(v)).or_default().push_back(i);
        }
        let mut pairs = Vec::new();
        let mut left_b = Vec::new();
        for (j, v) in b.iter().enumerate() {
            match by_key.get_mut(&key_hash(v)).and_then(|q| q.pop_front()) {
                Some(i) => pairs.push((i, j)),
                None => left_b.push(j),
            }
        }
        pairs.sort_unstable();
        for (i, j) in pairs {
            if self.full() {
                return;
            }
            let seg = PathSeg::Index(i);
            let child = cur.step(&self.eff.patterns, seg);
            path.push(seg);
            self.walk(&a[i], &b[j], &child, path);
            path.pop();
        }
        let mut left_a: Vec<usize> = by_key.into_values().flatten().collect();
        left_a.sort_unstable();
        self.report_leftovers(a, b, &left_a, &left_b, cur, path);
    }
}
