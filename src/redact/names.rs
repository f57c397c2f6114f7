//! Names taken from traffic that are published outside events: the paths and fields of
//! differences, which the statistics (`/api/v1/summary`'s top fields, clusters, the Kafka
//! statistics topic) and the learned noise model (`/api/v1/noise`, its suggested rules) count
//! by. They are redacted as the event redacts them, so a field counted in the statistics is the
//! field the event shows (the review UI filters the feed by it), and a key holding an e-mail
//! address or a key below a redacted node never reaches a counter.

use super::{Redaction, below_redacted};
use crate::compare::pattern::{Cursor, PathSeg, unescape};
use crate::compare::{Difference, Verdict};

/// Where a body pointer stands against `redact.paths`.
pub(super) enum Walk {
    /// A redacted path matches the pointer or one of its ancestors; `below` is the number of
    /// segments kept when the pointer goes deeper than the redacted node (the keys below it are
    /// part of its value).
    Hidden { below: Option<usize> },
    /// No redacted path on the way; the matcher stands at the pointer's node.
    Open(Cursor),
}

impl Redaction {
    /// Walks the redaction matcher down a body pointer (`/a/0/b`, `""` for the root).
    pub(super) fn walk(&self, pointer: &str) -> Walk {
        let segs: Vec<String> = if pointer.is_empty() {
            Vec::new()
        } else {
            pointer
                .split('/')
                .skip(1)
                .map(|s| unescape(s).unwrap_or_else(|| s.to_string()))
                .collect()
        };
        let mut cur = Cursor::start(&self.paths);
        if cur.accepted(&self.paths).next().is_some() {
            return Walk::Hidden {
                below: (!segs.is_empty()).then_some(0),
            };
        }
        for (i, s) in segs.iter().enumerate() {
            // An index and the same digits as a key match the same patterns.
            cur = cur.step(&self.paths, PathSeg::Key(s));
            if cur.accepted(&self.paths).next().is_some() {
                let n = i + 1;
                return Walk::Hidden {
                    below: (n < segs.len()).then_some(n),
                };
            }
        }
        Walk::Open(cur)
    }

    /// A difference's `path` and `field` as published: exactly what [`Redaction::difference`]
    /// publishes for them.
    pub fn difference_names(&self, d: &Difference) -> (String, String) {
        if !d.path.starts_with('@')
            && let Walk::Hidden { below: Some(n) } = self.walk(&d.path)
        {
            return (
                self.text(&below_redacted(&d.path, n)),
                self.text(&below_redacted(&d.field, n)),
            );
        }
        (self.text(&d.path), self.text(&d.field))
    }

    /// Gives every difference of `v` (and of its primary-vs-secondary list) its published path
    /// and field, so whatever counts by them — statistics, noise learning — holds nothing an
    /// event would not show. The signature is computed again from the published fields when one
    /// changed, so identical failures still share it (two e-mail addresses as keys are one
    /// field). Returns the raw names, which the event needs to redact the values: see
    /// [`RawNames::with_raw`].
    pub fn name_differences(&self, v: &mut Verdict) -> RawNames {
        let mut raw = Vec::new();
        for (i, d) in v.differences.iter_mut().enumerate() {
            let (path, field) = self.difference_names(d);
            if path != d.path || field != d.field {
                let path = std::mem::replace(&mut d.path, path);
                let field = std::mem::replace(&mut d.field, field);
                raw.push((i, path, field));
            }
        }
        if let Some(sec) = v.secondary_differences.as_mut() {
            for d in sec.iter_mut() {
                (d.path, d.field) = self.difference_names(d);
            }
        }
        if !raw.is_empty() {
            v.resign();
        }
        RawNames(raw)
    }
}

/// The raw paths and fields [`Redaction::name_differences`] replaced: `(index, path, field)`.
#[derive(Debug, Default)]
pub struct RawNames(Vec<(usize, String, String)>);

impl RawNames {
    /// Runs `f` on `v` with its raw names back in place, then puts the published ones back.
    /// [`crate::event::Event::build`] needs the raw pointer to find the redacted paths beneath
    /// or above a difference (a published pointer may be cut or rewritten).
    pub fn with_raw<R>(&mut self, v: &mut Verdict, f: impl FnOnce(&Verdict) -> R) -> R {
        self.swap(v);
        let r = f(v);
        self.swap(v);
        r
    }

    fn swap(&mut self, v: &mut Verdict) {
        for (i, path, field) in &mut self.0 {
            if let Some(d) = v.differences.get_mut(*i) {
                std::mem::swap(&mut d.path, path);
                std::mem::swap(&mut d.field, field);
            }
        }
    }
}

#[cfg(test)]
mod tests;
