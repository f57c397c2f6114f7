//! The built-in detectors (`redact.patterns`): e-mail addresses, card numbers and bearer
//! tokens/JWTs, each replaced by `<redacted:KIND>` wherever it appears in a string.
//!
//! The patterns are constants, compiled once per process. Should one ever fail to compile, the
//! detector fails closed: the whole string is replaced, never passed through unscanned.

use regex::{Captures, Regex};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::LazyLock;

pub const EMAIL: &str = "<redacted:email>";
pub const CARD: &str = "<redacted:card>";
pub const BEARER: &str = "<redacted:bearer>";
/// What a string becomes when a detector could not run (a pattern that failed to compile).
const UNSCANNED: &str = "<redacted:unscanned>";

/// One built-in detector, as named in `redact.patterns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// `local@domain.tld` → `<redacted:email>`.
    Email,
    /// 13–19 digits, single spaces or dashes allowed between groups, passing the Luhn check →
    /// `<redacted:card>`.
    Card,
    /// `Bearer <token>` (the token becomes `<redacted:bearer>`, the scheme word stays) and
    /// JWTs (`eyJ…` base64url parts joined by dots) → `<redacted:bearer>`.
    Bearer,
}

impl Detector {
    pub const ALL: [Detector; 3] = [Detector::Email, Detector::Card, Detector::Bearer];
}

/// `Bearer <b64token>` (RFC 6750: `[A-Za-z0-9-._~+/]+=*`). The scheme word is kept so a
/// reviewer still sees what kind of credential was there.
static BEARER_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer)[ \t]+[A-Za-z0-9\-._~+/]+=*").ok());

/// A JWT (JWS/JWE compact form): base64url parts joined by dots, the first one starting with
/// `eyJ` (base64 of `{"`). One dot is enough: a header and payload without the signature are
/// still the token's content. At least 10 characters after `eyJ` (the shortest real header,
/// `{"alg":"x"}`, is 15), so words like "heyJude." stay.
static JWT_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*").ok()
});

/// Conventional addresses: dot-atom local part, a domain with a letters-only top level.
static EMAIL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").ok()
});

/// The enabled detectors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detectors {
    pub email: bool,
    pub card: bool,
    pub bearer: bool,
}

impl Detectors {
    pub fn new(enabled: &[Detector]) -> Self {
        Self {
            email: enabled.contains(&Detector::Email),
            card: enabled.contains(&Detector::Card),
            bearer: enabled.contains(&Detector::Bearer),
        }
    }

    /// Runs the enabled detectors over `s`. Bearer tokens first (a JWT may hold digits that
    /// look like a card), then e-mail addresses (a local part may be digits), then cards.
    pub fn apply<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        if self.bearer {
            out = replace(out, &BEARER_RE, |c: &Captures<'_>| {
                format!("{} {BEARER}", &c[1])
            });
            out = replace(out, &JWT_RE, |_: &Captures<'_>| BEARER.to_string());
        }
        if self.email {
            out = replace(out, &EMAIL_RE, |_: &Captures<'_>| EMAIL.to_string());
        }
        if self.card
            && let Some(c) = cards(&out)
        {
            out = Cow::Owned(c);
        }
        out
    }

    /// Whether a JSON number's text is a card number (a bare integer of 13–19 digits passing
    /// Luhn): numbers are published as numbers, so they are not strings for [`Self::apply`].
    pub fn number_is_card(&self, text: &str) -> bool {
        let digits = text.strip_prefix('-').unwrap_or(text).as_bytes();
        self.card
            && (13..=19).contains(&digits.len())
            && digits.iter().all(u8::is_ascii_digit)
            && luhn(digits.iter().copied())
    }
}

/// Compiles the detectors' patterns now rather than on their first use. The grouper redacts
/// endpoint names on the request path; compiling there (tens of milliseconds in a debug build)
/// held up the first requests and their shadows (`tests/noise.rs`'s send skew showed it).
pub(super) fn compile_now() {
    for re in [&BEARER_RE, &JWT_RE, &EMAIL_RE] {
        LazyLock::force(re);
    }
}

fn replace<'a>(
    s: Cow<'a, str>,
    re: &LazyLock<Option<Regex>>,
    rep: impl FnMut(&Captures<'_>) -> String,
) -> Cow<'a, str> {
    let Some(re) = re.as_ref() else {
        return Cow::Owned(UNSCANNED.to_string());
    };
    match s {
        Cow::Borrowed(b) => re.replace_all(b, rep),
        Cow::Owned(o) => match re.replace_all(&o, rep) {
            Cow::Borrowed(_) => Cow::Owned(o),
            Cow::Owned(n) => Cow::Owned(n),
        },
    }
}

/// Replaces card numbers in `s`; `None` when there is none.
///
/// A run is a maximal sequence of digit groups separated by single spaces or dashes
/// (`4111 1111-1111 1111`). Within a run, the leftmost-longest window of whole groups holding
/// 13–19 digits that passes Luhn is a card, and the search continues after it; so a card
/// followed by an expiry (`4111 1111 1111 1111 12 25`) is still found. A run without separators
/// is a card only whole: a 40-digit identifier is not searched for 16-digit windows (a tenth of
/// them would pass Luhn by chance).
fn cards(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    let mut groups: Vec<(usize, usize)> = Vec::new();
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        groups.clear();
        let mut start = i;
        loop {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            groups.push((start, i));
            if i + 1 < b.len() && matches!(b[i], b' ' | b'-') && b[i + 1].is_ascii_digit() {
                i += 1;
                start = i;
            } else {
                break;
            }
        }
        let mut g = 0;
        while g < groups.len() {
            let mut digits = 0;
            let mut best = None;
            for (h, &(gs, ge)) in groups.iter().enumerate().skip(g) {
                digits += ge - gs;
                if digits > 19 {
                    break;
                }
                if digits >= 13 && luhn(window_digits(b, &groups[g..=h])) {
                    best = Some(h);
                }
            }
            match best {
                Some(h) => {
                    let (from, to) = (groups[g].0, groups[h].1);
                    let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                    o.push_str(&s[copied..from]);
                    o.push_str(CARD);
                    copied = to;
                    g = h + 1;
                }
                None => g += 1,
            }
        }
    }
    let mut o = out?;
    o.push_str(&s[copied..]);
    Some(o)
}

fn window_digits<'a>(b: &'a [u8], groups: &'a [(usize, usize)]) -> impl Iterator<Item = u8> + 'a {
    groups
        .iter()
        .flat_map(move |&(s, e)| b[s..e].iter().copied())
}

/// The Luhn check (ISO/IEC 7812-1) over ASCII digits, most significant first.
pub fn luhn(digits: impl Iterator<Item = u8>) -> bool {
    let d: Vec<u32> = digits.map(|c| u32::from(c - b'0')).collect();
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    !d.is_empty() && sum.is_multiple_of(10)
}

/// Whether every constant pattern compiled (tests; a failure would fail closed at run time).
#[cfg(test)]
pub fn all_compiled() -> bool {
    BEARER_RE.is_some() && JWT_RE.is_some() && EMAIL_RE.is_some()
}
