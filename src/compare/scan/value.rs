//! Reading tape nodes as values: scalars as the walk compares them, object members in key order
//! (what a `serde_json::Map` iterates), and `serde_json::Value`s built only for what a difference
//! carries, bounded like [`crate::compare::excerpt`].

use super::tape::{Kind, Tape, unescape};
use crate::compare::json::{MAX_STRING_CHARS, MAX_VALUE_NODES};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// A scalar node as the comparison sees it: numbers in serde_json's spelling, strings decoded.
pub(super) enum Scalar<'a> {
    Null,
    Bool(bool),
    Num(Cow<'a, str>),
    Str(Cow<'a, str>),
}

/// One member of an object: its decoded key and the index of its value node.
pub(super) struct Member<'a> {
    pub key: Cow<'a, str>,
    pub key_node: u32,
    pub value: u32,
}

impl<'a> Tape<'a> {
    /// A string node's value (decoded where it has escapes).
    #[inline]
    pub(super) fn string(&self, i: u32) -> Cow<'a, str> {
        let raw = self.raw(i);
        match self.node(i).kind {
            Kind::StrEsc => Cow::Owned(unescape(raw)),
            _ => Cow::Borrowed(raw),
        }
    }

    /// A number node's text as serde_json (`arbitrary_precision`) keeps it: `E` written `e`,
    /// and the exponent's sign always written.
    pub(super) fn number(&self, i: u32) -> Cow<'a, str> {
        let raw = self.raw(i);
        let Some(e) = raw.find(['e', 'E']) else {
            return Cow::Borrowed(raw);
        };
        let signed = matches!(raw.as_bytes().get(e + 1), Some(b'+' | b'-'));
        if raw.as_bytes()[e] == b'e' && signed {
            return Cow::Borrowed(raw);
        }
        let mut s = String::with_capacity(raw.len() + 1);
        s.push_str(&raw[..e]);
        s.push('e');
        if !signed {
            s.push('+');
        }
        s.push_str(&raw[e + 1..]);
        Cow::Owned(s)
    }

    /// A scalar node as a [`Scalar`]; `None` for containers.
    pub(super) fn scalar(&self, i: u32) -> Option<Scalar<'a>> {
        Some(match self.node(i).kind {
            Kind::Null => Scalar::Null,
            Kind::False => Scalar::Bool(false),
            Kind::True => Scalar::Bool(true),
            Kind::Number => Scalar::Num(self.number(i)),
            Kind::Str | Kind::StrEsc => Scalar::Str(self.string(i)),
            Kind::Array | Kind::Object => return None,
        })
    }

    /// The members of an object in key order, one per key (the last of duplicates wins, as in
    /// serde_json's map), into `out` (cleared first).
    pub(super) fn members(&self, i: u32, out: &mut Vec<Member<'a>>) {
        out.clear();
        let mut it = self.children(i);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push(Member {
                key: self.string(k),
                key_node: k,
                value: v,
            });
        }
        if out.windows(2).all(|w| w[0].key < w[1].key) {
            return;
        }
        // Stable: among equal keys the last in the document ends up last, and is kept.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|later, kept| {
            if later.key == kept.key {
                std::mem::swap(later, kept);
                true
            } else {
                false
            }
        });
    }

    /// The elements of an array, into `out` (cleared first).
    pub(super) fn elements(&self, i: u32, out: &mut Vec<u32>) {
        out.clear();
        out.extend(self.children(i));
    }

    /// The value of member `key` of object `i` (the last one, for duplicates).
    pub(super) fn get(&self, i: u32, key: &str) -> Option<u32> {
        if self.node(i).kind != Kind::Object {
            return None;
        }
        let mut found = None;
        let mut it = self.children(i);
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if self.string(k) == key {
                found = Some(v);
            }
        }
        found
    }

    /// The whole subtree as a `Value`, exactly as serde_json would have parsed it.
    pub(super) fn to_value(&self, i: u32) -> Value {
        match self.node(i).kind {
            Kind::Null => Value::Null,
            Kind::False => Value::Bool(false),
            Kind::True => Value::Bool(true),
            Kind::Number => Value::Number(number_value(&self.number(i))),
            Kind::Str | Kind::StrEsc => Value::String(self.string(i).into_owned()),
            Kind::Array => Value::Array(self.children(i).map(|c| self.to_value(c)).collect()),
            Kind::Object => {
                let mut m = Map::new();
                let mut it = self.children(i);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.insert(self.string(k).into_owned(), self.to_value(v));
                }
                Value::Object(m)
            }
        }
    }

    /// Nodes in the subtree as a `Value` would hold them (duplicate keys once), counted up to
    /// `limit`.
    fn count_nodes(&self, i: u32, limit: usize, n: &mut usize) {
        *n += 1;
        if *n >= limit {
            return;
        }
        match self.node(i).kind {
            Kind::Array => {
                for c in self.children(i) {
                    self.count_nodes(c, limit, n);
                    if *n >= limit {
                        return;
                    }
                }
            }
            Kind::Object => {
                let mut m = Vec::new();
                self.members(i, &mut m);
                for x in &m {
                    self.count_nodes(x.value, limit, n);
                    if *n >= limit {
                        return;
                    }
                }
            }
            _ => {}
        }
    }

    /// What [`crate::compare::excerpt`] makes of this node's `Value`, built without the `Value`
    /// when it would be summarised.
    pub(super) fn excerpt(&self, i: u32) -> Value {
        match self.node(i).kind {
            Kind::Str | Kind::StrEsc => {
                let s = self.string(i);
                let chars = s.chars().count();
                if chars > MAX_STRING_CHARS {
                    let cut: String = s.chars().take(MAX_STRING_CHARS).collect();
                    Value::String(format!("{cut}… ({chars} chars)"))
                } else {
                    Value::String(s.into_owned())
                }
            }
            Kind::Number => {
                let t = self.number(i);
                if t.len() > MAX_STRING_CHARS {
                    let cut = t.get(..MAX_STRING_CHARS).unwrap_or(&t);
                    Value::String(format!("{cut}… ({} chars)", t.len()))
                } else {
                    Value::Number(number_value(&t))
                }
            }
            Kind::Array | Kind::Object => {
                let mut n = 0;
                self.count_nodes(i, MAX_VALUE_NODES + 1, &mut n);
                if n <= MAX_VALUE_NODES {
                    return self.to_value(i);
                }
                if self.node(i).kind == Kind::Array {
                    Value::String(format!("<array of {} elements>", self.children(i).count()))
                } else {
                    let mut m = Vec::new();
                    self.members(i, &mut m);
                    Value::String(format!("<object with {} keys>", m.len()))
                }
            }
            _ => self.to_value(i),
        }
    }

    /// What the reference's `excerpt_array` makes of an array's elements (for `order`).
    pub(super) fn excerpt_array(&self, i: u32) -> Value {
        let n = self.children(i).count();
        if n > MAX_VALUE_NODES {
            return Value::String(format!("<array of {n} elements>"));
        }
        self.excerpt(i)
    }
}

/// A `Number` holding exactly `text` (already in serde_json's spelling).
fn number_value(text: &str) -> Number {
    Number::from_string_unchecked(text.to_string())
}
