//! What a difference record carries: the rendered pointer and field pattern, and a bounded
//! excerpt of each side's value.

use super::{MAX_STRING_CHARS, MAX_VALUE_NODES};
use crate::compare::pattern::{PathSeg, escape_into};
use serde_json::Value;

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

#[cfg(test)]
pub(super) fn excerpt_array(a: &[Value]) -> Value {
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
