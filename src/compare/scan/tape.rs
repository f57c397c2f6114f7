//! The scanner: one pass over a JSON body into a flat tape of nodes that point back into the
//! bytes (exact number text, string spans), instead of a `serde_json::Value` tree.
//!
//! It accepts exactly what `serde_json::from_slice::<Value>` accepts, since that decides whether a
//! body is compared as JSON or as text: the same number grammar, escapes (paired surrogates only),
//! no control characters in strings, whitespace ` \t\n\r`, nesting below 128 levels, and UTF-8
//! (checked once for the whole body: outside strings only ASCII is valid anyway). Where it
//! refuses a body, the caller asks serde_json for the error message.

/// What one node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    False,
    True,
    Number,
    /// A string without escapes: its span is its value.
    Str,
    /// A string with at least one escape: decoded on demand.
    StrEsc,
    Array,
    Object,
}

/// One node. Scalars: `off`/`len` is the span of the token (strings: between the quotes).
/// Containers: `off`/`len` is the span from the opening to the closing bracket, and `end` the index
/// of the first node after the subtree. An object's children are key, value, key, value, ...
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub kind: Kind,
    pub off: u32,
    pub len: u32,
    pub end: u32,
}

/// A scanned body. Offsets are `u32`: bodies of 4 GiB or more are refused (never scanned).
pub(crate) struct Tape<'a> {
    pub(super) src: &'a str,
    pub(super) nodes: Vec<Node>,
}

/// serde_json's nesting limit: 128 levels fail, 127 pass.
const MAX_DEPTH: u32 = 128;

impl<'a> Tape<'a> {
    /// Scans `b`; `None` where serde_json would refuse it (or it is 4 GiB or more).
    pub(crate) fn scan(b: &'a [u8]) -> Option<Tape<'a>> {
        if b.len() >= u32::MAX as usize {
            return None;
        }
        let src = std::str::from_utf8(b).ok()?;
        let mut s = Scanner {
            b,
            i: 0,
            depth: 0,
            // A node per ~12 bytes is typical of API bodies; growth covers the rest.
            nodes: Vec::with_capacity(b.len() / 12 + 4),
        };
        s.value()?;
        s.ws();
        if s.i != b.len() {
            return None;
        }
        Some(Tape {
            src,
            nodes: s.nodes,
        })
    }

    /// The index of the node after `i` and its subtree.
    #[inline]
    pub(super) fn next(&self, i: u32) -> u32 {
        let n = &self.nodes[i as usize];
        match n.kind {
            Kind::Array | Kind::Object => n.end,
            _ => i + 1,
        }
    }

    #[inline]
    pub(super) fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    /// The raw text of a node's span.
    #[inline]
    pub(super) fn raw(&self, i: u32) -> &'a str {
        let n = &self.nodes[i as usize];
        &self.src[n.off as usize..(n.off + n.len) as usize]
    }

    /// The raw text of a node's span, given the node.
    #[inline]
    pub(super) fn raw_span(&self, n: &Node) -> &'a str {
        &self.src[n.off as usize..(n.off + n.len) as usize]
    }

    /// The children of a container, in document order (for objects: keys and values alternate).
    pub(super) fn children(&self, i: u32) -> Children<'_, 'a> {
        Children {
            tape: self,
            at: i + 1,
            end: self.nodes[i as usize].end,
        }
    }
}

pub(super) struct Children<'t, 'a> {
    tape: &'t Tape<'a>,
    at: u32,
    end: u32,
}

impl Iterator for Children<'_, '_> {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.at >= self.end {
            return None;
        }
        let i = self.at;
        self.at = self.tape.next(i);
        Some(i)
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
    nodes: Vec<Node>,
}

impl Scanner<'_> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn push(&mut self, kind: Kind, off: usize, len: usize) -> usize {
        let at = self.nodes.len();
        self.nodes.push(Node {
            kind,
            off: off as u32,
            len: len as u32,
            end: at as u32 + 1,
        });
        at
    }

    fn value(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Kind::True),
            b'f' => self.literal(b"false", Kind::False),
            b'n' => self.literal(b"null", Kind::Null),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Option<()> {
        if !self.b[self.i..].starts_with(word) {
            return None;
        }
        self.push(kind, self.i, word.len());
        self.i += word.len();
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as serde_json's `scan_integer`.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        self.push(Kind::Number, start, self.i - start);
        Some(())
    }

    /// A string starting at the quote under the cursor; pushes its node and returns its index.
    fn string(&mut self) -> Option<usize> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None, // a control character
            }
        }
        let kind = if escaped { Kind::StrEsc } else { Kind::Str };
        let at = self.push(kind, start, self.i - start);
        self.i += 1;
        Some(at)
    }

    /// Advances over bytes that need no attention in a string: all but `"`, `\` and controls.
    /// Eight bytes at a time (SWAR); the lowest flagged byte is exact, so the scalar tail is too.
    #[inline]
    fn skip_plain(&mut self) {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let x = u64::from_le_bytes(w);
            let quote = x ^ (LO * u64::from(b'"'));
            let slash = x ^ (LO * u64::from(b'\\'));
            let hits = (quote.wrapping_sub(LO) & !quote)
                | (slash.wrapping_sub(LO) & !slash)
                | (x.wrapping_sub(LO * 0x20) & !x);
            let hits = hits & HI;
            if hits != 0 {
                self.i += (hits.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return;
            }
            self.i += 1;
        }
    }

    /// An escape at the cursor (`\`), as serde_json validates it for a `String`.
    fn escape(&mut self) -> Option<()> {
        self.i += 1;
        let c = self.peek()?;
        self.i += 1;
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let n = self.hex4()?;
                if (0xDC00..=0xDFFF).contains(&n) {
                    return None;
                }
                if (0xD800..=0xDBFF).contains(&n) {
                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                        return None;
                    }
                    self.i += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..=0xDFFF).contains(&lo) {
                        return None;
                    }
                }
                Some(())
            }
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let h = self.b.get(self.i..self.i + 4)?;
        let mut n = 0u16;
        for &c in h {
            let d = (c as char).to_digit(16)?;
            n = n * 16 + d as u16;
        }
        self.i += 4;
        Some(n)
    }

    fn enter(&mut self, kind: Kind) -> Option<usize> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return None;
        }
        let at = self.push(kind, self.i, 0);
        self.i += 1;
        self.ws();
        Some(at)
    }

    fn leave(&mut self, at: usize) {
        self.i += 1;
        self.depth -= 1;
        let end = self.nodes.len() as u32;
        let n = &mut self.nodes[at];
        n.len = self.i as u32 - n.off;
        n.end = end;
    }

    fn array(&mut self) -> Option<()> {
        let at = self.enter(Kind::Array)?;
        if self.peek()? == b']' {
            self.leave(at);
            return Some(());
        }
        loop {
            self.value()?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => break,
                _ => return None,
            }
        }
        self.leave(at);
        Some(())
    }

    fn object(&mut self) -> Option<()> {
        let at = self.enter(Kind::Object)?;
        if self.peek()? == b'}' {
            self.leave(at);
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            self.string()?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.value()?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => break,
                _ => return None,
            }
        }
        self.leave(at);
        Some(())
    }
}

/// Decodes a string's raw span (validated by the scanner) into its value.
pub(super) fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(p) = rest.find('\\') {
        out.push_str(&rest[..p]);
        let b = rest.as_bytes();
        let (c, used) = match b.get(p + 1) {
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => {
                let hex = |at: usize| {
                    rest.get(at..at + 4)
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .unwrap_or(0xFFFD)
                };
                let hi = hex(p + 2);
                if (0xD800..=0xDBFF).contains(&hi) {
                    let lo = hex(p + 8);
                    let cp = 0x1_0000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                    (char::from_u32(cp).unwrap_or('\u{FFFD}'), 12)
                } else {
                    (char::from_u32(hi).unwrap_or('\u{FFFD}'), 6)
                }
            }
            Some(&c) => (c as char, 2), // `"`, `\`, `/`
            None => break,
        };
        out.push(c);
        rest = &rest[(p + used).min(rest.len())..];
    }
    out.push_str(rest);
    out
}
