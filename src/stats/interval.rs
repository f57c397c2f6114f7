//! Interval statistics: what one sidecar counted for one endpoint between two flushes, the wire
//! form published to Kafka's `stats_topic` (`shadowdiff.stats.v1`, docs/kafka.md) and how the
//! fleet aggregator merges it back into a [`Stats`].
//!
//! Matches and skips are only counted, never published as events, so counts and latency reach
//! the aggregator through these messages; mismatch events (for the recent feed and the
//! signatures) come from the events topic through [`Stats::record_event`], which clusters them
//! without counting verdicts, so nothing is counted twice.
//!
//! Histograms travel in HdrHistogram's standard V2 compressed ("deflate") encoding, base64: any
//! HdrHistogram implementation can read them. The signed latency delta is kept, as in
//! [`LatencySet`], as two histograms: `delta_pos` (candidate − primary ≥ 0) and `delta_neg`
//! (primary − candidate > 0).

use super::counts::{
    Counts, FieldCount, FieldCounts, OTHER_FIELD, exchange_fields, published_differences,
};
use super::latency::{LatencySet, MAX_US};
use super::store::{EndpointStats, Stats};
use super::window::epoch_of;
use crate::compare::{DiffKind, SkipReason, VerdictKind};
use crate::event::{Event, format_ts};
use crate::pipeline::Observation;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

/// Schema name of a statistics message.
pub const STATS_SCHEMA: &str = "shadowdiff.stats.v1";

/// Precision of published histograms: the same as a sidecar's since-start histograms, so the
/// aggregator's since-start figures are as precise as a sidecar's.
const WIRE_SIGNIFICANT_DIGITS: u8 = 3;

/// Largest encoded histogram accepted (base64 text). A 3-digit histogram of 1 µs – 60 s encodes
/// to a few KiB at most; the bound keeps a malformed message from costing much.
const MAX_HISTOGRAM_B64: usize = 1 << 20;

/// The largest value a 3-digit, 1 µs – 60 s histogram reports (the top of `MAX_US`'s bucket):
/// anything above it cannot be merged into the aggregator's histograms.
static TOP_US: LazyLock<u64> = LazyLock::new(|| {
    LatencySet::new(WIRE_SIGNIFICANT_DIGITS)
        .primary
        .highest_equivalent(MAX_US)
});

/// What one endpoint counted during one interval: verdicts, skip reasons, (field, kind) counts
/// and latency. Recorded on the sidecar ([`IntervalDelta::record`]), published, parsed and merged
/// on the aggregator ([`Stats::merge_interval`]).
#[derive(Clone, Default)]
pub struct IntervalDelta {
    counts: Counts,
    fields: FieldCounts,
    latency: Option<Box<LatencySet>>,
}

impl std::fmt::Debug for IntervalDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalDelta")
            .field("verdicts", &self.counts.verdicts)
            .field("skips", &self.counts.skips)
            .field("fields", &self.fields.map.len())
            .field("latency", &self.latency.as_ref().map(|l| l.primary.len()))
            .finish()
    }
}

impl IntervalDelta {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one observation, as [`Stats`] does (each (field, kind) once per exchange, at most
    /// `max_fields` distinct fields, the rest as `(other)`).
    pub fn record(&mut self, o: &Observation<'_>, max_fields: usize) {
        let v = o.verdict;
        self.counts.verdicts[v.kind.index()] += 1;
        if let Some(r) = v.skip_reason {
            self.counts.skips[r.index()] += 1;
        }
        if o.primary_latency.is_some() || o.candidate_latency.is_some() {
            self.latency
                .get_or_insert_with(|| Box::new(LatencySet::new(WIRE_SIGNIFICANT_DIGITS)))
                .record(o.primary_latency, o.candidate_latency);
        }
        for (f, k, noise) in exchange_fields(published_differences(o)) {
            self.fields.bump(f, k, noise, max_fields);
        }
    }

    /// Nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.counts == Counts::default()
    }

    /// Exchanges counted, skipped ones included.
    pub fn exchanges(&self) -> u64 {
        self.counts.verdicts.iter().sum()
    }

    /// How many exchanges had verdict `k`.
    pub fn verdict(&self, k: VerdictKind) -> u64 {
        self.counts.get(k)
    }

    /// The latency histograms, when any exchange had a latency.
    pub fn latency(&self) -> Option<&LatencySet> {
        self.latency.as_deref()
    }

    /// The wire form of this delta, for endpoint `endpoint` of interval `[start, end)`.
    pub fn to_message(&self, head: MessageHead<'_>) -> Result<StatsMessage, StatsMessageError> {
        let verdicts = VerdictKind::ALL
            .iter()
            .map(|k| (k.as_str().to_string(), self.counts.get(*k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let skip_reasons = SkipReason::ALL
            .iter()
            .zip(self.counts.skips)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect();
        let mut fields: Vec<WireField> = self
            .fields
            .nonzero()
            .map(|(f, kind, c)| WireField {
                field: f.to_string(),
                kind,
                count: c.raw,
                noise: c.noise,
            })
            .collect();
        fields.sort_by(|a, b| a.field.cmp(&b.field).then(a.kind.cmp(&b.kind)));
        let latency = match &self.latency {
            None => None,
            Some(l) => {
                let mut ser = V2DeflateSerializer::new();
                let mut enc = |h: &Histogram<u64>| -> Result<String, StatsMessageError> {
                    let mut buf = Vec::new();
                    ser.serialize(h, &mut buf)
                        .map_err(|e| StatsMessageError::Histogram(format!("{e:?}")))?;
                    Ok(B64.encode(buf))
                };
                Some(WireLatency {
                    primary: enc(&l.primary)?,
                    candidate: enc(&l.candidate)?,
                    delta_pos: enc(&l.delta_pos)?,
                    delta_neg: enc(&l.delta_neg)?,
                    primary_sum_us: l.primary_sum_us,
                    candidate_sum_us: l.candidate_sum_us,
                })
            }
        };
        Ok(StatsMessage {
            schema: STATS_SCHEMA.to_string(),
            instance: head.instance.to_string(),
            run: head.run.to_string(),
            seq: head.seq,
            start: format_ts(head.start),
            end: format_ts(head.end),
            endpoint: head.endpoint.to_string(),
            verdicts,
            skip_reasons,
            fields,
            latency,
        })
    }

    /// Adds `fields` into `self.fields` under the cap (used when merging).
    fn add_fields_capped(dst: &mut FieldCounts, src: &FieldCounts, cap: usize) {
        for (k, v) in &src.map {
            let slot = match dst.map.get_mut(k) {
                Some(s) => s,
                None => {
                    let key: &str = if dst.map.len() < cap { k } else { OTHER_FIELD };
                    dst.map.entry(key.into()).or_default()
                }
            };
            for (a, b) in slot.iter_mut().zip(v) {
                a.raw += b.raw;
                a.noise += b.noise;
            }
        }
    }
}

/// The identifying part of a statistics message.
#[derive(Debug, Clone, Copy)]
pub struct MessageHead<'a> {
    pub instance: &'a str,
    pub run: &'a str,
    pub seq: u64,
    pub start: SystemTime,
    pub end: SystemTime,
    pub endpoint: &'a str,
}

/// `shadowdiff.stats.v1`: one endpoint's counts over one interval of one sidecar run
/// (docs/kafka.md, "The statistics topic").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsMessage {
    pub schema: String,
    /// The sidecar's name (config `instance`, else the host name).
    pub instance: String,
    /// Random per process start: `(instance, run, seq)` identifies a message even when two
    /// sidecars share a name or one restarts.
    pub run: String,
    /// Per run, counting up from 0 across all of the run's messages.
    pub seq: u64,
    /// The interval, RFC 3339 UTC with milliseconds: `[start, end)`.
    pub start: String,
    pub end: String,
    pub endpoint: String,
    /// Verdict name → exchanges; verdicts with none are left out.
    pub verdicts: BTreeMap<String, u64>,
    #[serde(default)]
    pub skip_reasons: BTreeMap<String, u64>,
    /// Per (field, kind): exchanges in which it differed, and how many of them only as noise.
    #[serde(default)]
    pub fields: Vec<WireField>,
    /// `null` when no exchange of the interval had a latency (all skipped before forwarding).
    #[serde(default)]
    pub latency: Option<WireLatency>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireField {
    pub field: String,
    pub kind: DiffKind,
    pub count: u64,
    pub noise: u64,
}

/// Latency histograms in µs, each base64 of the HdrHistogram V2 compressed encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireLatency {
    pub primary: String,
    pub candidate: String,
    /// candidate − primary, when the candidate was slower or equal.
    pub delta_pos: String,
    /// primary − candidate, when the candidate was faster.
    pub delta_neg: String,
    /// Exact sums (Prometheus `_sum`), which HDR does not keep.
    pub primary_sum_us: u64,
    pub candidate_sum_us: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsMessageError {
    #[error("not a {STATS_SCHEMA} message: {0}")]
    Json(String),
    #[error("schema {0:?}, expected {STATS_SCHEMA}")]
    Schema(String),
    #[error("unknown verdict {0:?}")]
    Verdict(String),
    #[error("unknown skip reason {0:?}")]
    SkipReason(String),
    #[error("bad timestamp {0:?}")]
    Timestamp(String),
    #[error("histogram: {0}")]
    Histogram(String),
}

/// A parsed statistics message: its identity and the delta to merge.
#[derive(Debug, Clone)]
pub struct ParsedStats {
    pub instance: String,
    pub run: String,
    pub seq: u64,
    pub end: SystemTime,
    pub endpoint: String,
    pub delta: IntervalDelta,
}

impl StatsMessage {
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a message: schema, names, timestamps and histograms.
    pub fn parse(bytes: &[u8]) -> Result<ParsedStats, StatsMessageError> {
        let m: StatsMessage =
            serde_json::from_slice(bytes).map_err(|e| StatsMessageError::Json(e.to_string()))?;
        m.into_delta()
    }

    /// Checks the message and builds the delta it carries.
    pub fn into_delta(self) -> Result<ParsedStats, StatsMessageError> {
        if self.schema != STATS_SCHEMA {
            return Err(StatsMessageError::Schema(self.schema));
        }
        let end = humantime::parse_rfc3339(&self.end)
            .map_err(|_| StatsMessageError::Timestamp(self.end.clone()))?;
        humantime::parse_rfc3339(&self.start)
            .map_err(|_| StatsMessageError::Timestamp(self.start.clone()))?;
        let mut d = IntervalDelta::new();
        for (name, n) in &self.verdicts {
            let k = VerdictKind::ALL
                .iter()
                .find(|k| k.as_str() == name)
                .ok_or_else(|| StatsMessageError::Verdict(name.clone()))?;
            d.counts.verdicts[k.index()] += n;
        }
        for (name, n) in &self.skip_reasons {
            let r = SkipReason::ALL
                .iter()
                .find(|r| r.as_str() == name)
                .ok_or_else(|| StatsMessageError::SkipReason(name.clone()))?;
            d.counts.skips[r.index()] += n;
        }
        for f in &self.fields {
            let slot = d.fields.map.entry(f.field.as_str().into()).or_default();
            let c: &mut FieldCount = &mut slot[f.kind.index()];
            c.raw += f.count;
            c.noise += f.noise.min(f.count);
        }
        if let Some(l) = &self.latency {
            let mut de = Deserializer::new();
            let mut dec = |s: &str| decode_histogram(&mut de, s);
            d.latency = Some(Box::new(LatencySet {
                primary: dec(&l.primary)?,
                candidate: dec(&l.candidate)?,
                delta_pos: dec(&l.delta_pos)?,
                delta_neg: dec(&l.delta_neg)?,
                primary_sum_us: l.primary_sum_us,
                candidate_sum_us: l.candidate_sum_us,
            }));
        }
        Ok(ParsedStats {
            instance: self.instance,
            run: self.run,
            seq: self.seq,
            end,
            endpoint: self.endpoint,
            delta: d,
        })
    }
}

fn decode_histogram(de: &mut Deserializer, s: &str) -> Result<Histogram<u64>, StatsMessageError> {
    if s.len() > MAX_HISTOGRAM_B64 {
        return Err(StatsMessageError::Histogram(format!(
            "{} bytes of base64, more than the {MAX_HISTOGRAM_B64} accepted",
            s.len()
        )));
    }
    let bytes = B64
        .decode(s)
        .map_err(|e| StatsMessageError::Histogram(format!("base64: {e}")))?;
    let h: Histogram<u64> = de
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| StatsMessageError::Histogram(format!("{e:?}")))?;
    if !h.is_empty() && h.max() > *TOP_US {
        return Err(StatsMessageError::Histogram(format!(
            "values outside 1 µs – {MAX_US} µs (max {})",
            h.max()
        )));
    }
    Ok(h)
}

impl Stats {
    /// Merges one interval of one endpoint (from a sidecar's statistics message) into the totals
    /// and into the window bucket of the interval's end `at` (clamped to now: a sidecar's clock
    /// ahead of ours must not write into the future). An interval older than the window only
    /// counts in the totals.
    pub fn merge_interval(&self, at: SystemTime, endpoint: &str, d: &IntervalDelta) {
        let now_epoch = self.epoch_now();
        let epoch = epoch_of(at, self.bucket_ms).min(now_epoch);
        let cfg = &self.cfg;
        self.with_endpoint(endpoint, |ep: &mut EndpointStats| {
            ep.total.add(&d.counts);
            IntervalDelta::add_fields_capped(&mut ep.total_fields, &d.fields, cfg.max_fields);
            if let Some(l) = &d.latency {
                ep.total_latency.add(l);
            }
            let Some(b) = ep.ring.past(epoch, now_epoch) else {
                return; // older than the window: only the totals count it
            };
            b.counts.add(&d.counts);
            IntervalDelta::add_fields_capped(&mut b.fields, &d.fields, cfg.max_fields);
            if let Some(l) = &d.latency {
                b.latency
                    .get_or_insert_with(|| Box::new(LatencySet::new(cfg.window_significant_digits)))
                    .add(l);
            }
        });
    }

    /// Takes a published event from another process (the aggregator reading the events topic):
    /// it joins the recent events and its signature's cluster, but no verdict is counted —
    /// counts come from the statistics messages. Events are kept in id order (ids start with
    /// their time), so the feed stays newest first when several sidecars interleave.
    pub fn record_event(&self, ev: Arc<Event>) {
        let seen = humantime::parse_rfc3339(&ev.ts).unwrap_or_else(|_| self.clock.now());
        if let Some(sig) = &ev.signature {
            let now_epoch = self.epoch_now();
            let epoch = epoch_of(seen, self.bucket_ms).min(now_epoch);
            let max = self.cfg.max_signatures;
            self.with_endpoint(&ev.endpoint, |ep| {
                if let Some(b) = ep.ring.past(epoch, now_epoch) {
                    super::store::bump_signature(&mut b.signatures, sig, max);
                }
                self.bump_cluster(
                    ep,
                    sig,
                    &ev.differences,
                    ev.verdict,
                    seen,
                    Some(ev.id.clone()),
                );
            });
        }
        if self.cfg.recent_events == 0 {
            return;
        }
        let mut r = self.recent.lock();
        let at = r.partition_point(|e| e.id <= ev.id);
        if r.len() >= self.cfg.recent_events {
            if at == 0 {
                return; // older than everything kept
            }
            r.pop_front();
            r.insert(at - 1, ev);
        } else {
            r.insert(at, ev);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
