//! The counters every level of the statistics shares — an endpoint since start, a window bucket,
//! an interval delta: verdicts and skip reasons ([`Counts`]) and, per differing (field, kind),
//! how many exchanges differed and how many of those only as noise ([`FieldCounts`]).

use super::report::FieldStat;
use crate::compare::{DiffKind, Difference, SkipReason, VerdictKind};
use crate::pipeline::Observation;
use std::collections::HashMap;

/// Where fields beyond `max_fields` are counted.
pub const OTHER_FIELD: &str = "(other)";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) verdicts: [u64; VerdictKind::ALL.len()],
    pub(super) skips: [u64; SkipReason::ALL.len()],
}

impl Counts {
    pub(super) fn add(&mut self, o: &Counts) {
        for (a, b) in self.verdicts.iter_mut().zip(o.verdicts) {
            *a += b;
        }
        for (a, b) in self.skips.iter_mut().zip(o.skips) {
            *a += b;
        }
    }

    pub(super) fn get(&self, k: VerdictKind) -> u64 {
        self.verdicts[k.index()]
    }

    pub(super) fn divergent(&self) -> u64 {
        self.get(VerdictKind::Mismatch) + self.get(VerdictKind::CandidateError)
    }

    /// Every verdict but `skipped`.
    pub(super) fn samples(&self) -> u64 {
        self.verdicts.iter().sum::<u64>() - self.get(VerdictKind::Skipped)
    }
}

/// Per (field, kind): exchanges in which it differed, and how many of those only as noise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FieldCount {
    pub(super) raw: u64,
    pub(super) noise: u64,
}

#[derive(Debug, Clone, Default)]
pub(super) struct FieldCounts {
    pub(super) map: HashMap<Box<str>, [FieldCount; DiffKind::ALL.len()]>,
}

impl FieldCounts {
    pub(super) fn bump(&mut self, field: &str, kind: DiffKind, noise: bool, cap: usize) {
        let slot = match self.map.get_mut(field) {
            Some(s) => s,
            None => {
                let key = if self.map.len() < cap {
                    field
                } else {
                    OTHER_FIELD
                };
                self.map.entry(key.into()).or_default()
            }
        };
        let c = &mut slot[kind.index()];
        c.raw += 1;
        c.noise += u64::from(noise);
    }

    pub(super) fn add(&mut self, o: &FieldCounts) {
        for (k, v) in &o.map {
            let slot = self.map.entry(k.clone()).or_default();
            for (a, b) in slot.iter_mut().zip(v) {
                a.raw += b.raw;
                a.noise += b.noise;
            }
        }
    }

    /// Every (field, kind) counted at least once, with its count: what the summary and the
    /// interval messages both publish.
    pub(super) fn nonzero(&self) -> impl Iterator<Item = (&str, DiffKind, &FieldCount)> {
        self.map.iter().flat_map(|(f, kinds)| {
            kinds
                .iter()
                .zip(DiffKind::ALL)
                .filter(|(c, _)| c.raw > 0)
                .map(move |(c, k)| (&**f, k, c))
        })
    }

    pub(super) fn top(&self, n: usize) -> Vec<FieldStat> {
        let mut v: Vec<FieldStat> = self
            .nonzero()
            .map(|(f, kind, c)| FieldStat {
                field: f.to_string(),
                kind,
                count: c.raw,
                noise: c.noise,
            })
            .collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.field.cmp(&b.field))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        v.truncate(n);
        v
    }
}

/// The differences whose fields the statistics count: the published ones (redacted, and capped
/// by `publish.max_body_bytes`) when the verdict was published — which every verdict with
/// differences is — since the summary, the clusters and the interval messages publish field
/// names too; a 1 MB JSON key otherwise reached `/api/v1/summary` whole.
pub(super) fn published_differences<'a>(o: &'a Observation<'_>) -> &'a [Difference] {
    o.event
        .map_or(&o.verdict.differences[..], |e| &e.differences[..])
}

/// The (field, kind) pairs of one exchange, each once (an array field may differ at many
/// indices); a pair counts as noise only if every such difference was noise.
pub(super) fn exchange_fields(differences: &[Difference]) -> Vec<(&str, DiffKind, bool)> {
    let mut seen: Vec<(&str, DiffKind, bool)> = Vec::with_capacity(differences.len());
    for d in differences {
        match seen
            .iter_mut()
            .find(|(f, k, _)| *k == d.kind && *f == d.field)
        {
            Some(s) => s.2 &= d.noise,
            None => seen.push((&d.field, d.kind, d.noise)),
        }
    }
    seen
}
