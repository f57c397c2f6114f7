//! Line numbers for block-style YAML. serde_yaml_ng's values carry no positions, so messages
//! about a key point at the line where it is written, found by scanning the text. Shared by the
//! rules loader ([`crate::compare::rules`]) and the config validator ([`crate::config`]).

/// An index over the lines of one YAML text. All returned lines are 1-based.
pub(crate) struct LineIndex<'a> {
    lines: Vec<&'a str>,
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
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .any(|p| t.starts_with(p.as_str()))
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    /// The line of a top-level `key:`.
    pub(crate) fn top_key(&self, key: &str) -> Option<usize> {
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
    pub(crate) fn key_path(&self, path: &[&str]) -> Option<usize> {
        let (first, rest) = path.split_first()?;
        let mut at = self.top_key(first)? - 1;
        for key in rest {
            match self.child_key(at, key) {
                Some(i) => at = i,
                None => return Some(at + 1),
            }
        }
        Some(at + 1)
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
