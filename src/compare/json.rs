//! Structural JSON diff under rules. One recursive walk over both trees; rule patterns are
//! tracked with a [`Cursor`] so nodes no rule touches cost a comparison and nothing else.
//! Recursion depth is bounded by the parser's nesting limit (serde_json: 128), so no input can
//! overflow the stack here.

use super::number;
use super::pattern::{Cursor, PathSeg, escape_into};
use super::rules::{Action, Effective, Rewrite, Tolerance};
use super::{DiffKind, Difference};
use serde_json::{Map, Value};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

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

    fn by_index<'v>(
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
    fn same_multiset(
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

    fn hash_elem(&self, v: &Value, cur: &Cursor, i: usize) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.canon_hash(v, &cur.step(&self.eff.patterns, PathSeg::Index(i)), &mut h);
        h.finish()
    }

    /// Hashes a value as the rules see it: ignored parts left out, rewrites and coercions applied,
    /// numbers by value, unordered and keyed arrays independent of order. Equal hashes mean equal
    /// under the rules (up to 64-bit collisions); tolerances are not hashable and are handled by
    /// the pairing pass in [`Self::unordered`].
    fn canon_hash<H: Hasher>(&self, v: &Value, cur: &Cursor, h: &mut H) {
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
    fn equal_under_rules(&self, a: &Value, b: &Value, cur: &Cursor) -> bool {
        let mut w = Walker::new(self.eff, 1);
        let mut path = Vec::new();
        w.walk(a, b, cur, &mut path);
        w.out.is_empty()
    }

    /// Multiset comparison: elements pair by canonical hash in O(n); leftovers that are equal only
    /// within a tolerance are paired by a bounded search; the rest are missing/added.
    fn unordered<'v>(
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
        let mut keep_a = Vec::new();
        for &i in left_a.iter() {
            let child = cur.step(&self.eff.patterns, PathSeg::Index(i));
            match left_b
                .iter()
                .position(|&j| self.equal_under_rules(&a[i], &b[j], &child))
            {
                Some(pos) => {
                    left_b.remove(pos);
                }
                None => keep_a.push(i),
            }
        }
        *left_a = keep_a;
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
    fn keyed<'v>(
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

fn hash_number<H: Hasher>(text: &str, h: &mut H) {
    h.write_u8(2);
    match number::canon(text) {
        Some(c) => c.hash(h),
        None => text.hash(h),
    }
}

fn apply_rewrites<'s>(s: &'s str, rewrites: &[&Rewrite]) -> Cow<'s, str> {
    let mut out = Cow::Borrowed(s);
    for rw in rewrites {
        if let Cow::Owned(o) = rw.regex.replace_all(&out, rw.replace.as_str()) {
            out = Cow::Owned(o);
        }
    }
    out
}

/// A string read as the number or boolean it spells, for `coerce`.
fn coerced(s: &str) -> Option<Value> {
    let t = s.trim();
    match t {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => number::canon(t)
            .map(|_| Value::Number(serde_json::Number::from_string_unchecked(t.to_string()))),
    }
}

/// Identical scalars: equal under any rule (no rule can make a value differ from itself), so the
/// walk skips them without stepping the pattern cursor — most leaves of most bodies.
fn same_scalar(p: &Value, c: &Value) -> bool {
    match (p, c) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x.as_str() == y.as_str(),
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

fn scalars_equal(p: &Value, c: &Value, rules: &NodeRules<'_>) -> bool {
    match (p, c) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => {
            numbers_equal(x.as_str(), y.as_str(), rules.tolerance)
        }
        (Value::String(x), Value::String(y)) => {
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
        (Value::String(s), other) | (other, Value::String(s)) if rules.coerce => {
            let s = apply_rewrites(s, &rules.rewrites);
            match (coerced(&s), other) {
                (Some(Value::Number(n)), Value::Number(m)) => {
                    numbers_equal(n.as_str(), m.as_str(), rules.tolerance)
                }
                (Some(Value::Bool(b)), Value::Bool(c)) => b == *c,
                _ => false,
            }
        }
        _ => false,
    }
}

fn coerced_equal(x: &str, y: &str, tol: Option<Tolerance>) -> bool {
    match (coerced(x), coerced(y)) {
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            numbers_equal(a.as_str(), b.as_str(), tol)
        }
        _ => false,
    }
}

fn numbers_equal(x: &str, y: &str, tol: Option<Tolerance>) -> bool {
    if number::eq(x, y) {
        return true;
    }
    match (tol, number::to_f64(x), number::to_f64(y)) {
        (Some(t), Some(a), Some(b)) => t.accepts(a, b),
        _ => false,
    }
}

fn same_type(p: &Value, c: &Value, coerce: bool) -> bool {
    let t = |v: &Value| match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    };
    if t(p) == t(c) {
        return true;
    }
    // Under `coerce`, "42" vs 43 is a value difference: the types were declared interchangeable.
    coerce
        && matches!(
            (p, c),
            (Value::String(_), Value::Number(_) | Value::Bool(_))
                | (Value::Number(_) | Value::Bool(_), Value::String(_))
        )
}

/// Renders the concrete pointer and the field pattern (indices as `*`).
pub fn render(path: &[PathSeg<'_>], last: Option<PathSeg<'_>>) -> (String, String) {
    let mut p = String::new();
    let mut f = String::new();
    for seg in path.iter().copied().chain(last) {
        p.push('/');
        f.push('/');
        match seg {
            PathSeg::Key(k) => {
                escape_into(k, &mut p);
                escape_into(k, &mut f);
            }
            PathSeg::Index(i) => {
                p.push_str(&i.to_string());
                f.push('*');
            }
        }
    }
    (p, f)
}

/// A copy of a value for a difference record, summarised when large so a mismatch on a big
/// subtree cannot blow up an event.
pub fn excerpt(v: &Value) -> Value {
    match v {
        Value::String(s) if s.chars().count() > MAX_STRING_CHARS => {
            let cut: String = s.chars().take(MAX_STRING_CHARS).collect();
            Value::String(format!("{cut}… ({} chars)", s.chars().count()))
        }
        // A number's text is unbounded too (exact big numbers): a million digits must not be
        // copied into every difference that holds it.
        Value::Number(n) if n.as_str().len() > MAX_STRING_CHARS => {
            let t = n.as_str();
            let cut = t.get(..MAX_STRING_CHARS).unwrap_or(t);
            Value::String(format!("{cut}… ({} chars)", t.len()))
        }
        Value::Array(a) if count_nodes(v, MAX_VALUE_NODES + 1) > MAX_VALUE_NODES => {
            Value::String(format!("<array of {} elements>", a.len()))
        }
        Value::Object(m) if count_nodes(v, MAX_VALUE_NODES + 1) > MAX_VALUE_NODES => {
            Value::String(format!("<object with {} keys>", m.len()))
        }
        _ => v.clone(),
    }
}

fn excerpt_array(a: &[Value]) -> Value {
    if a.len() > MAX_VALUE_NODES {
        return Value::String(format!("<array of {} elements>", a.len()));
    }
    excerpt(&Value::Array(a.to_vec()))
}

fn count_nodes(v: &Value, limit: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        n += 1;
        if n >= limit {
            return n;
        }
        match x {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    n
}
