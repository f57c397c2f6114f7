//! The `compare` target's generator: JSON documents from fuzz input (keys from a small set so
//! documents share them, numbers in every notation and size, nesting around the parser's
//! limit), edited candidates, candidates a rule set must find equal ([`equivalent`]), a number
//! changed in value, and JSON text with the key order and whitespace the input picks.

use super::Equiv;
use arbitrary::Unstructured;
use serde_json::{Map, Number, Value};

/// Object keys: few, so documents share them; `/`, `~` and the empty key test pointer escaping.
const KEYS: &[&str] = &[
    "a", "b", "id", "x", "items", "/", "~", "a/b", "~1", "", "é", "1",
];
const MAX_DEPTH: usize = 6;
const MAX_WIDTH: usize = 6;

pub(super) fn value(u: &mut Unstructured<'_>, depth: usize) -> Value {
    let top = if depth >= MAX_DEPTH || u.is_empty() {
        4
    } else {
        6
    };
    match u.int_in_range(0..=top).unwrap_or(0) {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary().unwrap_or(false)),
        2 | 3 => number(u),
        4 => Value::String(string(u)),
        5 => {
            let n = u.int_in_range(0..=MAX_WIDTH).unwrap_or(0);
            Value::Array((0..n).map(|_| value(u, depth + 1)).collect())
        }
        _ => {
            let n = u.int_in_range(0..=MAX_WIDTH).unwrap_or(0);
            let mut m = Map::new();
            for _ in 0..n {
                m.insert(key(u), value(u, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Nesting around serde_json's limit of 128: below it JSON, above it text.
pub(super) fn deep(u: &mut Unstructured<'_>) -> Value {
    let n = u.int_in_range(120..=140).unwrap_or(120);
    let mut v = value(u, MAX_DEPTH);
    for _ in 0..n {
        v = Value::Array(vec![v]);
    }
    v
}

fn key(u: &mut Unstructured<'_>) -> String {
    u.choose(KEYS).map_or_else(|_| "a".into(), |k| (*k).into())
}

fn string(u: &mut Unstructured<'_>) -> String {
    match u.int_in_range(0u8..=3).unwrap_or(0) {
        // Strings the coerce rule reads as numbers or booleans.
        0 => number_text(u),
        1 => (*u
            .choose(&["true", "false", " 7 ", "1e2", "-0"])
            .unwrap_or(&""))
        .into(),
        _ => {
            let n = u.int_in_range(0..=12).unwrap_or(0);
            (0..n)
                .map(|_| u.arbitrary::<char>().unwrap_or('a'))
                .collect()
        }
    }
}

fn number(u: &mut Unstructured<'_>) -> Value {
    Value::Number(Number::from_string_unchecked(number_text(u)))
}

/// JSON number text: sign, integer part (up to 30 digits), fraction, exponent (huge sometimes).
fn number_text(u: &mut Unstructured<'_>) -> String {
    let mut s = String::new();
    if u.ratio(1, 4).unwrap_or(false) {
        s.push('-');
    }
    let digits = |u: &mut Unstructured<'_>, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + u.int_in_range(0..=9).unwrap_or(0)))
            .collect()
    };
    let int_len = *u.choose(&[1, 1, 1, 2, 3, 16, 20, 30]).unwrap_or(&1);
    if int_len == 1 {
        s.push_str(&digits(u, 1));
    } else {
        s.push(char::from(b'1' + u.int_in_range(0..=8).unwrap_or(0)));
        s.push_str(&digits(u, int_len - 1));
    }
    if u.ratio(1, 3).unwrap_or(false) {
        let n = u.int_in_range(1..=8).unwrap_or(1);
        s.push('.');
        s.push_str(&digits(u, n));
    }
    if u.ratio(1, 4).unwrap_or(false) {
        s.push(*u.choose(&['e', 'E']).unwrap_or(&'e'));
        s.push_str(u.choose(&["", "+", "-"]).unwrap_or(&""));
        if u.ratio(1, 8).unwrap_or(false) {
            s.push_str("99999999999999999999");
        } else {
            let n = u.int_in_range(1..=3).unwrap_or(1);
            s.push_str(&digits(u, n));
        }
    }
    s
}

/// The document, edited here and there.
pub(super) fn mutate(v: &Value, u: &mut Unstructured<'_>, depth: usize) -> Value {
    if u.is_empty() {
        return v.clone();
    }
    match u.int_in_range(0u8..=9).unwrap_or(0) {
        0 => return value(u, depth),
        1 => {
            if let Value::Number(n) = v {
                return Value::Number(Number::from_string_unchecked(notation(n.as_str(), u)));
            }
        }
        _ => {}
    }
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                match u.int_in_range(0u8..=7).unwrap_or(0) {
                    0 => {}
                    1 => {
                        out.insert(key(u), value(u, depth + 1));
                    }
                    _ => {
                        out.insert(k.clone(), mutate(x, u, depth + 1));
                    }
                }
            }
            if u.ratio(1, 4).unwrap_or(false) {
                out.insert(key(u), value(u, depth + 1));
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let mut out: Vec<Value> = a.iter().map(|x| mutate(x, u, depth + 1)).collect();
            match u.int_in_range(0u8..=5).unwrap_or(0) {
                0 if !out.is_empty() => {
                    let i = u.choose_index(out.len()).unwrap_or(0);
                    out.remove(i);
                }
                1 => {
                    let i = u.int_in_range(0..=out.len()).unwrap_or(0);
                    out.insert(i, value(u, depth + 1));
                }
                2 => shuffle(&mut out, u),
                _ => {}
            }
            Value::Array(out)
        }
        _ => v.clone(),
    }
}

fn shuffle(a: &mut [Value], u: &mut Unstructured<'_>) {
    for i in (1..a.len()).rev() {
        let j = u.int_in_range(0..=i).unwrap_or(0);
        a.swap(i, j);
    }
}

/// The number's text written another way: more fraction zeros, or the point moved into the
/// exponent. Exponents beyond ±10^15 are left alone (issue 12 says such numbers are compared
/// exactly or reported as not comparable; their arithmetic is not the generator's business).
fn notation(text: &str, u: &mut Unstructured<'_>) -> String {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()),
        None => (rest, Some(0)),
    };
    let Some(exp) = exp.filter(|e| e.abs() < 1_000_000_000_000_000) else {
        return text.into();
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    match u.int_in_range(0u8..=2).unwrap_or(0) {
        0 => format!("{neg}{int}.{frac}00e{exp}"),
        // 0.DIGITS × 10^(exp + len(int)).
        1 => format!("{neg}0.{int}{frac}E{:+}", exp + int.len() as i64),
        // DIGITS × 10^(exp − len(frac)), written as an integer mantissa (no leading zeros).
        _ => {
            let digits = format!("{int}{frac}");
            let digits = match digits.trim_start_matches('0') {
                "" => "0",
                d => d,
            };
            format!("{neg}{digits}e{}", exp - frac.len() as i64)
        }
    }
}

/// A copy of `v` the rules of `eq` must find equal to it.
pub(super) fn equivalent(
    v: &Value,
    eq: Equiv,
    u: &mut Unstructured<'_>,
    path: &mut Vec<String>,
) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                path.push(k.clone());
                let ignored = eq == Equiv::Ignored && ignored(path);
                if !ignored {
                    out.insert(k.clone(), equivalent(x, eq, u, path));
                } else if u.arbitrary().unwrap_or(false) {
                    out.insert(k.clone(), value(u, MAX_DEPTH - 1));
                }
                path.pop();
            }
            let extra = match eq {
                Equiv::Ignored => ["id", "a", "/", "x"]
                    .iter()
                    .find(|k| {
                        !m.contains_key(**k) && {
                            path.push((**k).into());
                            let i = ignored(path);
                            path.pop();
                            i
                        }
                    })
                    .map(|k| (*k).to_string()),
                Equiv::Added => Some(key(u)).filter(|k| !m.contains_key(k)),
                _ => None,
            };
            if let Some(k) = extra
                && u.arbitrary().unwrap_or(false)
            {
                out.insert(k, value(u, MAX_DEPTH - 1));
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                out.push(equivalent(x, eq, u, path));
                path.pop();
            }
            match eq {
                Equiv::Shuffled { .. } => shuffle(&mut out, u),
                Equiv::Added if u.arbitrary().unwrap_or(false) => out.push(value(u, MAX_DEPTH - 1)),
                _ => {}
            }
            Value::Array(out)
        }
        Value::Number(n) => {
            let t = n.as_str();
            // Only a number f64 holds has a tolerance (`compare::number`): one that underflows
            // to 0 (`1e-99999999999999999999`) is compared exactly, so it is never moved.
            let mantissa = t.split(['e', 'E']).next().unwrap_or(t);
            let underflows = t.parse::<f64>().is_ok_and(|x| x == 0.0)
                && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
            let moved = |by: f64| -> Option<Value> {
                let x: f64 = t.parse().ok().filter(|_| !underflows)?;
                let y = x + by;
                (x.abs() < 1e15 && y.is_finite())
                    .then(|| Value::Number(Number::from_string_unchecked(y.to_string())))
            };
            let s = f64::from(u.int_in_range(0u8..=200).unwrap_or(100)) / 100.0 - 1.0;
            let moved = match eq {
                Equiv::Shuffled { abs: Some(a) } => moved(s * a / 4.0),
                Equiv::Relative(r) => t.parse::<f64>().ok().and_then(|x| moved(s * x * r / 4.0)),
                Equiv::Coerced => Some(Value::String(format!(" {t}"))),
                _ => None,
            };
            moved.unwrap_or_else(|| Value::Number(Number::from_string_unchecked(notation(t, u))))
        }
        Value::Bool(b) if eq == Equiv::Coerced => Value::String(b.to_string()),
        Value::String(s) if eq == Equiv::Digits => Value::String(
            s.chars()
                .map(|c| match c {
                    '0'..='9' => char::from(b'0' + u.int_in_range(0..=9).unwrap_or(0)),
                    c => c,
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `ignore` set's patterns: `/a`, `/**/id`, `/b/*/x`, `/~1` (the key `/`).
fn ignored(path: &[String]) -> bool {
    matches!(path, [k] if k == "a" || k == "/")
        || path.last().is_some_and(|k| k == "id")
        || matches!(path, [b, _, x] if b == "b" && x == "x")
}

/// The document with one number changed in value (a digit put before its integer part).
pub(super) fn change_number(v: &Value, u: &mut Unstructured<'_>) -> Option<Value> {
    let mut numbers = 0;
    count_numbers(v, &mut numbers);
    if numbers == 0 {
        return None;
    }
    let mut target = u.choose_index(numbers).unwrap_or(0);
    Some(change_nth(v, &mut target))
}

fn count_numbers(v: &Value, n: &mut usize) {
    match v {
        Value::Number(_) => *n += 1,
        Value::Array(a) => a.iter().for_each(|x| count_numbers(x, n)),
        Value::Object(m) => m.values().for_each(|x| count_numbers(x, n)),
        _ => {}
    }
}

fn change_nth(v: &Value, target: &mut usize) -> Value {
    match v {
        Value::Number(n) => {
            let hit = *target == 0;
            *target = target.wrapping_sub(1);
            if !hit {
                return v.clone();
            }
            let t = n.as_str();
            let changed = match t.strip_prefix('-') {
                Some(rest) => format!("-1{rest}"),
                None => format!("1{t}"),
            };
            Value::Number(Number::from_string_unchecked(changed))
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| change_nth(x, target)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), change_nth(x, target)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// JSON text of `v`, objects' keys in an order and with whitespace the input picks.
pub(super) fn write(v: &Value, u: &mut Unstructured<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let pretty = u.arbitrary().unwrap_or(false);
    write_into(v, u, pretty, &mut out);
    out
}

fn write_into(v: &Value, u: &mut Unstructured<'_>, pretty: bool, out: &mut Vec<u8>) {
    let sep: &[u8] = if pretty { b",\n " } else { b"," };
    match v {
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(sep);
                }
                write_into(x, u, pretty, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            if u.arbitrary().unwrap_or(false) {
                entries.reverse();
            }
            out.push(b'{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(sep);
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.extend_from_slice(if pretty { b": " } else { b":" });
                write_into(x, u, pretty, out);
            }
            out.push(b'}');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}
