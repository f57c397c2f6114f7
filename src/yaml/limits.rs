//! Limits a config or rules text must meet *before* the YAML parser sees it, so that a hostile
//! or careless file is refused in milliseconds, with its file, line and reason.
//!
//! Why before: libyaml's scanner is quadratic in flow nesting (it re-checks every open simple
//! key on each token). A 200 KB file of `[[[[…` took 76 s to reject in a release build, and
//! `proxy` did not start meanwhile (issue 12); 16,000 levels already take 6 s in a debug build.
//! serde_yaml_ng's own recursion limit (128) only applies once libyaml has produced the events,
//! which is after the damage. So:
//!
//! - **Size**: at most [`MAX_FILE_BYTES`]; [`read`] stops reading there (a FIFO or `/dev/zero`
//!   named as a rules file cannot fill the memory either).
//! - **Depth**: at most [`MAX_DEPTH`] levels of nesting, counted by a linear pre-scan of the
//!   text ([`depth`]): block indentation levels (and `- ` entries) plus open flow `[`/`{`, with
//!   quoted scalars, comments, block scalars (`|`, `>`) and multi-line plain scalars skipped,
//!   as the parser would read them. The count errs on the high side (an entry and the mapping
//!   in it count twice) but real files use a handful of levels.
//! - **Aliases**: anchors and aliases may not expand the document beyond [`MAX_VALUES`] values
//!   (the "billion laughs"). serde_yaml_ng bounds alias *jumps* to 100 × the events of the
//!   file, but each jump may replay a large anchored subtree, so one anchor of 25,000 items
//!   and 25,000 aliases to it would build 625 million values. A text with an anchor is first
//!   walked without building anything (`limits/aliases.rs`, [`expansion`]), stopping at the budget.

use super::Problem;
use std::io::Read;
use std::path::Path;

mod aliases;
pub(crate) use aliases::expansion;

/// Largest config or rules file read, in bytes (1 MiB). A large rules file is a few KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// Deepest nesting accepted (block levels plus flow brackets, as [`depth`] counts them). The
/// deepest real config is about 6 levels; serde_yaml_ng refuses 128.
pub const MAX_DEPTH: usize = 64;

/// Most values a document may hold once its aliases are expanded.
pub const MAX_VALUES: usize = 100_000;

/// Reads a config or rules file, refusing one larger than [`MAX_FILE_BYTES`] without reading
/// past the limit.
pub(crate) fn read(file: &Path) -> Result<String, Problem> {
    let cannot = |e: std::io::Error| Problem::new(file, None, format!("cannot read: {e}"));
    let f = std::fs::File::open(file).map_err(cannot)?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(cannot)?;
    if buf.len() > MAX_FILE_BYTES {
        return Err(too_large(file));
    }
    String::from_utf8(buf).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Problem::new(file, Some(line), "cannot read: not valid UTF-8")
    })
}

fn too_large(file: &Path) -> Problem {
    Problem::new(
        file,
        None,
        format!(
            "larger than {} bytes (1 MiB): refused before parsing",
            MAX_FILE_BYTES
        ),
    )
}

/// Size and depth, checked on the text before it is parsed.
pub(crate) fn check(file: &Path, text: &str) -> Result<(), Problem> {
    if text.len() > MAX_FILE_BYTES {
        return Err(too_large(file));
    }
    depth(text).map_err(|(line, depth)| {
        Problem::new(
            file,
            Some(line),
            format!(
                "nested deeper than {MAX_DEPTH} levels (level {depth} here): refused before parsing"
            ),
        )
    })
}

/// The deepest nesting of `text`, as `Err((line, depth))` at the first place it passes
/// [`MAX_DEPTH`]. Linear in the text; never holds more than [`MAX_DEPTH`] levels.
///
/// This is a tokenizer that follows libyaml's own (unsafe-libyaml's `scanner.rs`) wherever the
/// answer matters: where a token starts (a `[` inside a plain scalar opens nothing, one at a
/// token start always opens a flow collection, in block context too), where a plain, quoted
/// or block scalar ends (the continuation rules use libyaml's indentation stack, which is
/// modelled here: a level is pushed where libyaml rolls one — at `- `, `? ` and at a simple key
/// followed by `:` — and popped where it unrolls), and which characters break lines (`\r`,
/// NEL, LS and PS too). Text it takes for a scalar must be a scalar to libyaml as well, or
/// the count could be fooled; text libyaml would refuse anyway may be counted either way.
pub(crate) fn depth(text: &str) -> Result<(), (usize, usize)> {
    depth_within(text, MAX_DEPTH).map(|_| ())
}

/// [`depth`] against `max`; `Ok` holds the deepest nesting counted.
pub(crate) fn depth_within(text: &str, max: usize) -> Result<usize, (usize, usize)> {
    let mut s = Scan {
        max,
        deepest: 0,
        b: text.as_bytes(),
        pos: 0,
        idx: 0,
        line: 1,
        col: 0,
        indents: Vec::new(),
        flow: 0,
        key: None,
        key_allowed: true,
    };
    s.run().map(|()| s.deepest).map_err(|d| (s.line, d))
}

/// Whether the scan goes on after a scalar: `Stop` where libyaml reports an error (nothing after
/// it is parsed).
#[derive(PartialEq)]
enum Next {
    Go,
    Stop,
}

struct Scan<'t> {
    /// The deepest nesting accepted.
    max: usize,
    /// The deepest nesting seen so far.
    deepest: usize,
    b: &'t [u8],
    pos: usize,
    /// Characters before `pos` (libyaml's mark index: simple keys go stale after 1024).
    idx: usize,
    line: usize,
    /// Column of `pos`, in characters.
    col: usize,
    /// libyaml's indentation stack: the column of each open block collection.
    indents: Vec<usize>,
    /// Open flow collections.
    flow: usize,
    /// The possible simple key at flow level 0: (line, column, index).
    key: Option<(usize, usize, usize)>,
    /// libyaml's `simple_key_allowed`.
    key_allowed: bool,
}

impl Scan<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(self.pos + i).copied()
    }

    /// Length of the line break at `pos + i`, if one is there.
    fn brk(&self, i: usize) -> Option<usize> {
        match (self.at(i), self.at(i + 1), self.at(i + 2)) {
            (Some(b'\r'), Some(b'\n'), _) => Some(2),
            (Some(b'\r' | b'\n'), _, _) => Some(1),
            (Some(0xC2), Some(0x85), _) => Some(2),
            (Some(0xE2), Some(0x80), Some(0xA8 | 0xA9)) => Some(3),
            _ => None,
        }
    }

    fn blank(&self, i: usize) -> bool {
        matches!(self.at(i), Some(b' ' | b'\t'))
    }

    /// Blank, a break or the end (libyaml's `IS_BLANKZ`).
    fn blankz(&self, i: usize) -> bool {
        matches!(self.at(i), None | Some(0)) || self.blank(i) || self.brk(i).is_some()
    }

    fn end(&self) -> bool {
        matches!(self.at(0), None | Some(0))
    }

    /// Steps over one character.
    fn step(&mut self) {
        let n = match self.at(0) {
            Some(c) if c >= 0xF0 => 4,
            Some(c) if c >= 0xE0 => 3,
            Some(c) if c >= 0xC0 => 2,
            _ => 1,
        };
        self.pos = (self.pos + n).min(self.b.len());
        self.idx += 1;
        self.col += 1;
    }

    /// Steps over a line break, if one is here.
    fn newline(&mut self) -> bool {
        match self.brk(0) {
            Some(n) => {
                self.pos += n;
                self.idx += 1;
                self.line += 1;
                self.col = 0;
                true
            }
            None => false,
        }
    }

    fn skip_line(&mut self) {
        while !self.end() && self.brk(0).is_none() {
            self.step();
        }
    }

    /// A document marker (`---` or `...` at column 0, then a blank).
    fn marker(&self) -> bool {
        self.col == 0
            && matches!(
                (self.at(0), self.at(1), self.at(2)),
                (Some(b'-'), Some(b'-'), Some(b'-')) | (Some(b'.'), Some(b'.'), Some(b'.'))
            )
            && self.blankz(3)
    }

    fn check(&mut self) -> Result<(), usize> {
        let d = self.indents.len() + self.flow;
        self.deepest = self.deepest.max(d);
        if d > self.max { Err(d) } else { Ok(()) }
    }

    /// libyaml's `roll_indent`: a block collection starts at `col`.
    fn roll(&mut self, col: usize) -> Result<(), usize> {
        if self.flow == 0 && self.indents.last().is_none_or(|&t| t < col) {
            self.indents.push(col);
            self.check()?;
        }
        Ok(())
    }

    /// libyaml's `save_simple_key`, at flow level 0 (only those roll an indentation).
    fn save_key(&mut self) {
        if self.flow == 0 && self.key_allowed {
            self.key = Some((self.line, self.col, self.idx));
        }
    }

    /// libyaml's `scan_to_next_token`: spaces, comments, line breaks.
    fn skip_to_token(&mut self) {
        loop {
            if self.col == 0 && self.b[self.pos..].starts_with("\u{feff}".as_bytes()) {
                self.pos += 3;
            }
            while self.blank(0) {
                self.step();
            }
            if self.at(0) == Some(b'#') {
                self.skip_line();
            }
            if !self.newline() {
                return;
            }
            if self.flow == 0 {
                self.key_allowed = true;
            }
        }
    }

    fn run(&mut self) -> Result<(), usize> {
        loop {
            self.skip_to_token();
            if self.end() {
                return Ok(());
            }
            let col = self.col;
            if self.flow == 0 {
                while self.indents.last().is_some_and(|&t| t > col) {
                    self.indents.pop();
                }
            }
            let c = self.b[self.pos];
            if col == 0 && c == b'%' {
                self.skip_line(); // a directive
                continue;
            }
            if self.marker() {
                self.indents.clear();
                self.key = None;
                self.key_allowed = false;
                for _ in 0..3 {
                    self.step();
                }
                continue;
            }
            let next_blankz = self.blankz(1);
            match c {
                b'[' | b'{' => {
                    self.save_key();
                    self.flow += 1;
                    self.check()?;
                    self.key_allowed = true;
                    self.step();
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    self.key_allowed = false;
                    self.step();
                }
                b',' => {
                    self.key_allowed = true;
                    self.step();
                }
                b'-' if next_blankz => {
                    self.roll(col)?;
                    self.key = None;
                    self.key_allowed = true;
                    self.step();
                }
                b'?' if self.flow > 0 || next_blankz => {
                    self.roll(col)?;
                    self.key = None;
                    self.key_allowed = self.flow == 0;
                    self.step();
                }
                b':' if self.flow > 0 || next_blankz => {
                    if self.flow == 0 {
                        match self.key.take() {
                            Some((line, kcol, kidx))
                                if line == self.line && kidx + 1024 >= self.idx =>
                            {
                                self.roll(kcol)?
                            }
                            _ => self.roll(col)?,
                        }
                    }
                    self.key_allowed = self.flow == 0;
                    self.step();
                }
                b'*' | b'&' | b'!' => {
                    // An alias, an anchor or a tag: a name, then the node (for the latter two).
                    self.save_key();
                    self.key_allowed = false;
                    self.step();
                    let flow_indicator = |s: &Self| {
                        s.flow > 0 && matches!(s.at(0), Some(b',' | b'[' | b']' | b'{' | b'}'))
                    };
                    let name_char = |s: &Self| {
                        c == b'!'
                            || s.at(0).is_some_and(|b| {
                                b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
                            })
                    };
                    while !(self.blankz(0) || flow_indicator(self)) && name_char(self) {
                        self.step();
                    }
                }
                b'|' | b'>' if self.flow == 0 => {
                    self.key = None;
                    self.key_allowed = true;
                    if self.block_scalar() == Next::Stop {
                        return Ok(());
                    }
                }
                b'\'' | b'"' => {
                    self.save_key();
                    self.key_allowed = false;
                    if self.quoted(c) == Next::Stop {
                        return Ok(());
                    }
                }
                _ => {
                    self.save_key();
                    self.key_allowed = false;
                    if self.plain() == Next::Stop {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A single- or double-quoted scalar, over as many lines as it takes.
    fn quoted(&mut self, q: u8) -> Next {
        self.step();
        loop {
            if self.end() || self.marker() {
                return Next::Stop; // libyaml: unexpected end or document indicator
            }
            match self.at(0) {
                Some(b'\\') if q == b'"' => {
                    self.step();
                    if !self.newline() {
                        self.step();
                    }
                }
                Some(c) if c == q => {
                    self.step();
                    if q == b'\'' && c == b'\'' && self.at(0) == Some(b'\'') {
                        self.step(); // '' is a quote inside single quotes
                        continue;
                    }
                    return Next::Go;
                }
                _ => {
                    if !self.newline() {
                        self.step();
                    }
                }
            }
        }
    }

    /// A plain scalar (libyaml's `scan_plain_scalar`); in block context it continues on lines
    /// indented deeper than the current block collection.
    fn plain(&mut self) -> Next {
        let indent = self.indents.last().map_or(0, |&t| t + 1);
        loop {
            if self.marker() || self.at(0) == Some(b'#') {
                return Next::Go;
            }
            while !self.blankz(0) {
                let c = self.at(0);
                if self.flow > 0
                    && c == Some(b':')
                    && matches!(self.at(1), Some(b',' | b'?' | b'[' | b']' | b'{' | b'}'))
                {
                    return Next::Stop; // libyaml: "found unexpected ':'"
                }
                if (c == Some(b':') && self.blankz(1))
                    || (self.flow > 0 && matches!(c, Some(b',' | b'[' | b']' | b'{' | b'}')))
                {
                    return Next::Go;
                }
                self.step();
            }
            if !(self.blank(0) || self.brk(0).is_some()) {
                return Next::Go;
            }
            let mut broke = false;
            loop {
                if self.blank(0) {
                    self.step();
                } else if self.newline() {
                    broke = true;
                } else {
                    break;
                }
            }
            if broke && self.flow == 0 {
                self.key_allowed = true;
            }
            if self.flow == 0 && self.col < indent {
                return Next::Go;
            }
        }
    }

    /// A literal or folded block scalar (libyaml's `scan_block_scalar`): its header, then every
    /// line indented at least as deep as its first line (or its indentation indicator says).
    fn block_scalar(&mut self) -> Next {
        self.step();
        let mut increment = 0;
        for _ in 0..2 {
            match self.at(0) {
                Some(b'+' | b'-') => self.step(),
                Some(d @ b'1'..=b'9') => {
                    increment = usize::from(d - b'0');
                    self.step();
                }
                _ => break,
            }
        }
        while self.blank(0) {
            self.step();
        }
        if self.at(0) == Some(b'#') {
            self.skip_line();
        }
        if !self.newline() {
            return if self.end() { Next::Go } else { Next::Stop };
        }
        let parent = self.indents.last().copied();
        let mut indent = match (increment, parent) {
            (0, _) => 0,
            (i, Some(p)) => p + i,
            (i, None) => i,
        };
        // Leading empty lines, and the first line's indentation when not given.
        let mut max_indent = 0;
        loop {
            while (indent == 0 || self.col < indent) && self.at(0) == Some(b' ') {
                self.step();
            }
            max_indent = max_indent.max(self.col);
            if !self.newline() {
                break;
            }
        }
        if indent == 0 {
            indent = max_indent.max(parent.map_or(0, |p| p + 1)).max(1);
        }
        while self.col == indent && !self.end() {
            self.skip_line();
            if !self.newline() {
                break;
            }
            loop {
                while self.col < indent && self.at(0) == Some(b' ') {
                    self.step();
                }
                if !self.newline() {
                    break;
                }
            }
        }
        Next::Go
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
