//! Leaves in the walk: when two scalars are equal under the rules (exact numbers, `tolerance`,
//! `coerce`, `rewrite`), and the canonical hash of a number for `unordered` arrays.

#[cfg(test)]
use super::NodeRules;
use crate::compare::number;
use crate::compare::rules::{Rewrite, Tolerance};
use serde_json::Value;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};

pub(in crate::compare) fn hash_number<H: Hasher>(text: &str, h: &mut H) {
    h.write_u8(2);
    match number::canon(text) {
        Some(c) => c.hash(h),
        None => text.hash(h),
    }
}

pub(in crate::compare) fn apply_rewrites<'s>(s: &'s str, rewrites: &[&Rewrite]) -> Cow<'s, str> {
    let mut out = Cow::Borrowed(s);
    for rw in rewrites {
        if let Cow::Owned(o) = rw.regex.replace_all(&out, rw.replace.as_str()) {
            out = Cow::Owned(o);
        }
    }
    out
}

/// A string read as the number or boolean it spells, for `coerce`.
pub(in crate::compare) fn coerced(s: &str) -> Option<Value> {
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
#[cfg(test)]
pub(in crate::compare) fn same_scalar(p: &Value, c: &Value) -> bool {
    match (p, c) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x.as_str() == y.as_str(),
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
pub(in crate::compare) fn scalars_equal(p: &Value, c: &Value, rules: &NodeRules<'_>) -> bool {
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

pub(in crate::compare) fn coerced_equal(x: &str, y: &str, tol: Option<Tolerance>) -> bool {
    match (coerced(x), coerced(y)) {
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            numbers_equal(a.as_str(), b.as_str(), tol)
        }
        _ => false,
    }
}

pub(in crate::compare) fn numbers_equal(x: &str, y: &str, tol: Option<Tolerance>) -> bool {
    if number::eq(x, y) {
        return true;
    }
    match (tol, number::to_f64(x), number::to_f64(y)) {
        (Some(t), Some(a), Some(b)) => t.accepts(a, b),
        _ => false,
    }
}

#[cfg(test)]
pub(in crate::compare) fn same_type(p: &Value, c: &Value, coerce: bool) -> bool {
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
