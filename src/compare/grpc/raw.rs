//! Schema-less decoding of a protobuf message, like `protoc --decode_raw`: an object keyed by
//! field number, so differences read `/1/3` and rules name fields by number.
//!
//! What each wire type becomes: varint → the unsigned number (a `sint` reads zigzagged, an
//! `int32` −1 as 18446744073709551615, as `--decode_raw` shows them); 64- and 32-bit → the hex
//! of the little-endian value (`0x4023fae147ae147b`: without a schema a double is not told from
//! a `fixed64`); length-delimited → printable UTF-8 text as a string, else a nested message when
//! the bytes parse as one, else the bytes as a string with `\xNN` escapes. A field seen more
//! than once is an array of its values, in wire order (a repeated field, or packed scalars
//! as their bytes). Groups (deprecated) are not decoded: the message is then compared as bytes.
//!
//! Why text before message, when `--decode_raw` tries the message first: many short strings
//! parse as messages ("(A" is field 5 = 65), and a string that flips between the two readings
//! from one answer to the next would be a `type` difference instead of a `value` one. A nested
//! message almost always holds a byte below 0x20 (a length, a small number, a tag of field 1 to
//! 3): those read as messages still.

use serde_json::{Map, Value};
use std::fmt::Write;

/// Nesting decoded as messages at most; deeper bytes read as strings (no input can overflow the
/// stack, and the comparator's JSON walk has the same depth bound).
const MAX_DEPTH: usize = 64;

/// A message as an object keyed by field number; `None` when the bytes are not one.
pub(super) fn decode(msg: &[u8]) -> Option<Value> {
    message(msg, 0).map(Value::Object)
}

fn message(mut b: &[u8], depth: usize) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 || field > (1 << 29) - 1 {
            return None;
        }
        let value = match wire {
            0 => Value::from(varint(&mut b)?),
            1 => {
                let (v, rest) = b.split_first_chunk::<8>()?;
                b = rest;
                Value::String(format!("{:#018x}", u64::from_le_bytes(*v)))
            }
            5 => {
                let (v, rest) = b.split_first_chunk::<4>()?;
                b = rest;
                Value::String(format!("{:#010x}", u32::from_le_bytes(*v)))
            }
            2 => {
                let len = usize::try_from(varint(&mut b)?).ok()?;
                let bytes = b.get(..len)?;
                b = &b[len..];
                delimited(bytes, depth)
            }
            _ => return None,
        };
        match out.entry(field.to_string()) {
            serde_json::map::Entry::Vacant(e) => {
                e.insert(value);
            }
            serde_json::map::Entry::Occupied(mut e) => match e.get_mut() {
                // Only repetition makes arrays here: a decoded value is never one.
                Value::Array(a) => a.push(value),
                first => {
                    let first = first.take();
                    e.insert(Value::Array(vec![first, value]));
                }
            },
        }
    }
    Some(out)
}

fn delimited(bytes: &[u8], depth: usize) -> Value {
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.chars().any(char::is_control)
    {
        return Value::String(s.to_string());
    }
    if !bytes.is_empty()
        && depth < MAX_DEPTH
        && let Some(m) = message(bytes, depth + 1)
    {
        return Value::Object(m);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => {
            let mut s = String::with_capacity(bytes.len() * 2);
            for &c in bytes {
                if c.is_ascii_graphic() || c == b' ' {
                    s.push(c as char);
                } else {
                    let _ = write!(s, "\\x{c:02x}");
                }
            }
            Value::String(s)
        }
    }
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}
