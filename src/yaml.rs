//! What config and rules validation share, so that both report problems the same way: every
//! problem at once, each as [`Problem`] (file, line, rule, reason).
//!
//! The machinery: a text is parsed to a YAML value first (a syntax error carries its line); then
//! each key is deserialised on its own into its `deny_unknown_fields` struct (`one_key`), so
//! that one bad value cannot hide the next; the problem is placed on the line where the key is
//! written. serde_yaml_ng's values carry no positions, so lines are found by scanning the text
//! (`LineIndex`) — enough for block-style keys, which is where people write them.
//!
//! Before any of that, a text must pass the limits of [`limits`]: at most [`MAX_FILE_BYTES`],
//! [`MAX_DEPTH`] levels of nesting and [`MAX_VALUES`] values once aliases are expanded.

mod limits;

pub(crate) use limits::read;

/// Nesting as the parser builds it (a scalar 0, each collection one more than its deepest
/// element or key): what [`scanned_depth`] is checked against.
#[doc(hidden)]
pub fn nesting(v: &Yaml) -> usize {
    match v {
        Yaml::Sequence(s) => 1 + s.iter().map(nesting).max().unwrap_or(0),
        Yaml::Mapping(m) => {
            1 + m
                .iter()
                .map(|(k, v)| nesting(k).max(nesting(v)))
                .max()
                .unwrap_or(0)
        }
        Yaml::Tagged(t) => nesting(&t.value),
        _ => 0,
    }
}

/// The deepest nesting the pre-parse scan counts in `text`, or where it passed [`MAX_DEPTH`]
/// as `(line, depth)`: for the `config` fuzz target's property that the scan never counts less
/// than the parser nests.
#[doc(hidden)]
pub fn scanned_depth(text: &str) -> Result<usize, (usize, usize)> {
    limits::depth_within(text, MAX_DEPTH)
}
pub use limits::{MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES};

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value as Yaml};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config or rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line, when it could be located.
    pub line: Option<usize>,
    /// `rule 2 ("GET /orders/{id}")` for a problem inside a rule; `None` otherwise.
    pub rule: Option<String>,
    pub reason: String,
}

impl Problem {
    /// A problem of the file as a whole or of a key outside any rule.
    pub fn new(file: &Path, line: Option<usize>, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            rule: None,
            reason: reason.into(),
        }
    }
}

/// `file:line: rule: reason`, each part only when known: what editors and terminals link to.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, ": {r}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Parses a YAML text; a syntax error is a problem at its line. The message keeps the parser's
/// own positions: in a syntax error they are real (and name where an unclosed `[` was opened).
/// The text's size, nesting depth and alias expansion are checked first ([`limits`]), so a
/// hostile text is refused before the parser spends time or memory on it.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Yaml, Problem> {
    limits::check(file, text)?;
    limits::expansion(file, text)?;
    serde_yaml_ng::from_str(text).map_err(|e| {
        // Errors without a position are about the document as a whole; a second document is
        // pointed at where it starts.
        let line = e.location().map(|l| l.line()).unwrap_or_else(|| {
            let mut markers = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.starts_with("---"));
            let opens = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with('%'))
                .is_some_and(|l| l.starts_with("---"));
            markers.nth(usize::from(opens)).map_or(1, |(i, _)| i + 1)
        });
        Problem::new(file, Some(line), format!("not valid YAML: {e}"))
    })
}

/// Most problems listed per file. Locating a problem's line scans the file and checking a key
/// costs a deserialisation, so a file of 50,000 bad keys took minutes to report whole; past
/// this many, checking stops and one line says so.
pub const MAX_PROBLEMS: usize = 100;

/// Whether checking goes on: the problems of this file (from `first` on) have not passed
/// [`MAX_PROBLEMS`] yet. One more than the cap is let in, so [`cap`] can tell that it stopped.
pub(crate) fn room(problems: &[Problem], first: usize) -> bool {
    problems.len() - first <= MAX_PROBLEMS
}

/// Keeps the first [`MAX_PROBLEMS`] problems of this file (those from `first` on), and says
/// that checking stopped there when it did.
pub(crate) fn cap(file: &Path, problems: &mut Vec<Problem>, first: usize) {
    if problems.len() - first > MAX_PROBLEMS {
        problems.truncate(first + MAX_PROBLEMS);
        problems.push(Problem::new(
            file,
            None,
            format!("more problems not listed: checking stopped after the first {MAX_PROBLEMS}"),
        ));
    }
}

/// Deserialises `v` into `T`, only to see whether `T` accepts it.
pub(crate) fn check<T: DeserializeOwned>(v: &Yaml) -> Result<(), serde_yaml_ng::Error> {
    serde_yaml_ng::from_value::<T>(v.clone()).map(|_| ())
}

/// A mapping holding only `key: value`. Checked against a struct whose every field has a
/// default, it checks that one key on its own: a file with several bad keys gets one problem per
/// key, not just the first.
pub(crate) fn one_key(key: &Yaml, value: &Yaml) -> Yaml {
    let mut one = Mapping::new();
    one.insert(key.clone(), value.clone());
    Yaml::Mapping(one)
}

/// A serde error as the reason of a problem. serde_yaml_ng appends "at line L column C" to some
/// messages; positions inside a value deserialised on its own are meaningless to the user, so
/// they are dropped (the problem carries the line where the key is written).
pub(crate) fn message(e: &serde_yaml_ng::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The key and the expected keys of an unknown-field error: (`colour`, `match, ignore, …`).
/// serde reports a `deny_unknown_fields` refusal only as text, in the fixed wording of
/// `serde::de::Error::unknown_field` ("unknown field `k`, expected one of `a`, `b`"); the rules
/// loader words it as it always has, with the expected keys taken from the struct itself.
pub(crate) fn unknown_key(e: &serde_yaml_ng::Error) -> Option<(String, String)> {
    let s = message(e);
    let rest = s.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .strip_prefix(", expected ")
        .unwrap_or("no keys")
        .replace('`', "");
    Some((key.to_string(), expected))
}

/// What kind of value `v` is, for messages: `a list`, `a number`.
pub(crate) fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// A value as written, shortened for messages: `2`, `"yes"`, `a list`.
pub(crate) fn short(v: &Yaml) -> String {
    let s = match v {
        Yaml::Null => "null".to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Sequence(_) => "a list".to_string(),
        Yaml::Mapping(_) => "a mapping".to_string(),
        Yaml::Tagged(t) => format!("tagged {}", t.tag),
    };
    if s.len() > 60 {
        format!("{}…", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

/// An index over the lines of one YAML text. All returned lines are 1-based.
pub(crate) struct LineIndex<'a> {
    lines: Vec<&'a str>,
    /// The first line of each top-level key, so that looking one up does not scan the file.
    top: HashMap<&'a str, usize>,
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn is_blank_or_comment(l: &str) -> bool {
    let t = l.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Whether a (trimmed) line starts with `key:` or `"key":` or `'key':`, also after a `- `.
fn starts_with_key(line: &str, key: &str) -> bool {
    let t = line.trim_start().trim_start_matches("- ").trim_start();
    let quoted = |q: char| {
        t.strip_prefix(q)
            .and_then(|r| r.strip_prefix(key))
            .and_then(|r| r.strip_prefix(q))
            .is_some_and(|r| r.starts_with(':'))
    };
    t.strip_prefix(key).is_some_and(|r| r.starts_with(':')) || quoted('"') || quoted('\'')
}

/// The key a line starts with, as [`starts_with_key`] reads it (up to the first `:` when not
/// quoted).
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start().trim_start_matches("- ").trim_start();
    for q in ['"', '\''] {
        if let Some(r) = t.strip_prefix(q) {
            let (k, rest) = r.split_once(q)?;
            return rest.starts_with(':').then_some(k);
        }
    }
    t.split_once(':').map(|(k, _)| k)
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut top = HashMap::new();
        for (i, l) in lines.iter().enumerate() {
            if indent_of(l) == 0
                && let Some(k) = key_of(l)
            {
                top.entry(k).or_insert(i + 1);
            }
        }
        Self { lines, top }
    }

    /// The line of a top-level `key:`.
    pub(crate) fn top_key(&self, key: &str) -> Option<usize> {
        if !key.contains([':', '"', '\'']) {
            return self.top.get(key).copied();
        }
        // A key that is not read whole by `key_of`: scan.
        self.lines
            .iter()
            .position(|l| indent_of(l) == 0 && starts_with_key(l, key))
            .map(|i| i + 1)
    }

    /// The first line containing `needle` at or after the line starting with `anchor`.
    pub(crate) fn find_after(&self, anchor: &str, needle: &str) -> Option<usize> {
        let from = self.lines.iter().position(|l| l.starts_with(anchor))?;
        self.lines[from..]
            .iter()
            .position(|l| l.contains(needle))
            .map(|i| from + i + 1)
    }

    /// The line of a nested key, e.g. `["shadow", "timeout"]`: each key is looked for inside the
    /// block of the previous one (lines indented deeper, up to the next line at its indent or
    /// less). When a key is not written in block style (a flow mapping such as
    /// `circuit: {failures: 0}`), the deepest key found is returned, which is where the value is.
    ///
    /// When the first key is not written in block style either (the whole file is one flow
    /// mapping), the first line that mentions the last key is returned, else line 1: a problem
    /// always has a line to point at.
    pub(crate) fn key_path(&self, path: &[&str]) -> Option<usize> {
        let (first, rest) = path.split_first()?;
        let Some(top) = self.top_key(first) else {
            return Some(self.mention(path.last().unwrap_or(first)).unwrap_or(1));
        };
        let mut at = top - 1;
        for key in rest {
            match self.child_key(at, key) {
                Some(i) => at = i,
                None => return Some(at + 1),
            }
        }
        Some(at + 1)
    }

    /// The first line where `key` is written as a key (`key:`, in flow style too), else the
    /// first that holds it at all.
    pub(crate) fn mention(&self, key: &str) -> Option<usize> {
        let as_key = |l: &&str| {
            [
                format!("{key}:"),
                format!("\"{key}\":"),
                format!("'{key}':"),
            ]
            .iter()
            .any(|k| l.contains(k.as_str()))
        };
        self.lines
            .iter()
            .position(as_key)
            .or_else(|| self.lines.iter().position(|l| l.contains(key)))
            .map(|i| i + 1)
    }

    /// The first line starting with a key that is a collection (`[a]: 1`, `{a: b}: 1`, `? …`).
    pub(crate) fn complex_key(&self) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.trim_start().starts_with(['[', '{', '?']))
            .map(|i| i + 1)
    }

    /// 0-based index of `key:` inside the block of the line at 0-based `parent`.
    fn child_key(&self, parent: usize, key: &str) -> Option<usize> {
        let base = indent_of(self.lines.get(parent)?);
        for (i, l) in self.lines.iter().enumerate().skip(parent + 1) {
            if is_blank_or_comment(l) {
                continue;
            }
            // A list item at the parent's own indent still belongs to it (`key:\n- a`).
            let t = l.trim_start();
            if indent_of(l) <= base && !(indent_of(l) == base && t.starts_with('-')) {
                return None;
            }
            if starts_with_key(l, key) {
                return Some(i);
            }
        }
        None
    }

    /// Lines where each item of the list under the top-level `key:` starts.
    pub(crate) fn list_item_starts(&self, key: &str) -> Vec<usize> {
        let Some(from) = self.top_key(key).map(|l| l - 1) else {
            return Vec::new();
        };
        self.items_in_block(from)
    }

    /// Lines where each item of the list under the nested key `path` starts.
    pub(crate) fn list_items_at(&self, path: &[&str]) -> Vec<usize> {
        match self.key_path(path) {
            Some(l) => self.items_in_block(l - 1),
            None => Vec::new(),
        }
    }

    fn items_in_block(&self, from: usize) -> Vec<usize> {
        let base = self.lines.get(from).map(|l| indent_of(l)).unwrap_or(0);
        let mut indent = None;
        let mut out = Vec::new();
        for (i, l) in self.lines.iter().enumerate().skip(from + 1) {
            if is_blank_or_comment(l) {
                continue;
            }
            let t = l.trim_start();
            let ind = indent_of(l);
            if ind < base || (ind == base && !t.starts_with('-')) {
                break; // the next key at the parent's level
            }
            if t.starts_with("- ") || t == "-" {
                match indent {
                    None => {
                        indent = Some(ind);
                        out.push(i + 1);
                    }
                    Some(x) if x == ind => out.push(i + 1),
                    _ => {}
                }
            }
        }
        out
    }

    /// The line of `key:` between lines `start` (inclusive) and `end` (exclusive), both 1-based.
    pub(crate) fn key_between(
        &self,
        key: &str,
        start: Option<usize>,
        end: Option<usize>,
    ) -> Option<usize> {
        let start = start?;
        let end = end.unwrap_or(self.lines.len() + 1);
        (start..end).find(|&ln| {
            self.lines
                .get(ln - 1)
                .is_some_and(|l| starts_with_key(l, key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
listen: 0.0.0.0:8080
shadow:
  methods: [GET]
  circuit: {failures: 0}
  routes:
    - match: \"POST /a\"
      mirror: true
    - match: \"POST /b\"
sinks:
  file:
    path: x
    keep: 0
";

    /// `unknown_key` reads serde's wording of a `deny_unknown_fields` refusal: pin it.
    #[test]
    fn unknown_keys_are_read_from_serdes_message() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Two {
            abs: Option<f64>,
            rel: Option<f64>,
        }
        let v: Yaml = serde_yaml_ng::from_str("within: 1").unwrap();
        let e = serde_yaml_ng::from_value::<Two>(v).unwrap_err();
        assert_eq!(
            unknown_key(&e),
            Some(("within".into(), "abs or rel".into()))
        );
        let v: Yaml = serde_yaml_ng::from_str("abs: x").unwrap();
        let e = serde_yaml_ng::from_value::<Two>(v).unwrap_err();
        assert_eq!(unknown_key(&e), None);
    }

    #[test]
    fn finds_nested_keys_and_list_items() {
        let l = LineIndex::new(TEXT);
        assert_eq!(l.top_key("shadow"), Some(2));
        assert_eq!(l.key_path(&["shadow", "methods"]), Some(3));
        assert_eq!(l.key_path(&["sinks", "file", "keep"]), Some(12));
        // Flow mapping: the deepest block key.
        assert_eq!(l.key_path(&["shadow", "circuit", "failures"]), Some(4));
        // `keep` under sinks.file, not a `keep` elsewhere.
        assert_eq!(l.key_path(&["shadow", "keep"]), Some(2));
        assert_eq!(l.list_items_at(&["shadow", "routes"]), vec![6, 8]);
        assert_eq!(l.key_between("mirror", Some(6), Some(8)), Some(7));
        assert_eq!(l.list_item_starts("listen"), Vec::<usize>::new());
    }
}
