//! The alias budget: a text with anchors is walked without building anything, and refused
//! once its aliases would expand it beyond [`MAX_VALUES`] values (the "billion laughs").

use super::MAX_VALUES;
use crate::yaml::Problem;
use serde::de::{DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};
use std::cell::Cell;
use std::fmt;
use std::path::Path;

/// Refuses a text whose aliases expand beyond [`MAX_VALUES`] values, by walking the document
/// without building it. Only texts with an anchor (`&`) can have aliases.
pub(crate) fn expansion(file: &Path, text: &str) -> Result<(), Problem> {
    if !text.contains('&') {
        return Ok(());
    }
    let left = Cell::new(MAX_VALUES);
    match Count(&left).deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        Ok(()) => Ok(()),
        // serde_yaml_ng's own bound on alias jumps may stop the walk first: the same refusal.
        // Other errors are syntax errors, reported by the parse that follows, in its words.
        Err(e) if left.get() > 0 && !e.to_string().contains("repetition limit") => Ok(()),
        Err(e) => Err(Problem::new(
            file,
            e.location()
                .map(|l| l.line())
                .or_else(|| first_alias_line(text)),
            format!(
                "aliases expand the document beyond {MAX_VALUES} values: refused (anchors and \
                 aliases may repeat a value, not multiply the file)"
            ),
        )),
    }
}

/// The line of the first alias (`*name` where a node may start), for a refusal that serde_yaml_ng
/// gives no position.
fn first_alias_line(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let i = (0..b.len()).find(|&i| {
        b[i] == b'*'
            && (i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'[' | b',' | b'{' | b'\n'))
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    })?;
    Some(1 + b[..i].iter().filter(|&&c| c == b'\n').count())
}

/// Counts values as they are deserialised, failing when the budget runs out.
#[derive(Clone, Copy)]
struct Count<'a>(&'a Cell<usize>);

impl Count<'_> {
    fn take<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.0.get().checked_sub(1) {
            Some(n) => {
                self.0.set(n);
                Ok(())
            }
            None => Err(E::custom("too many values")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.take()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.take()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.take()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.take()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.take()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.take()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    /// A tagged value (`!tag x`).
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        self.take()?;
        let (_, v) = data.variant_seed(self)?;
        v.newtype_variant_seed(self)
    }
}
