//! Divergence statistics: a [`crate::pipeline::Sink`] that counts verdicts, skip reasons and
//! differing fields, keeps latency histograms, clusters mismatches by signature and remembers
//! recent events — per endpoint and overall, over a sliding window and since start. The admin
//! API reads it.
//!
//! Map of the module:
//!
//! - `config`: [`StatsConfig`], `stats:` in `shadowdiff.yaml` (sizes and limits).
//! - `endpoint_map`: [`EndpointMap`], the one sharded, capped per-endpoint map (fold into
//!   [`OTHER_ENDPOINT`]); the publisher's interval deltas use it too.
//! - `window`: clocks, [`Window`] (the span a query covers) and the bucketed sliding window.
//! - `counts`: the verdict, skip and (field, kind) counters every level shares.
//! - `store`: [`Stats`] itself, its per-endpoint state and recording (the hot path).
//! - `query`: summary, gate, mismatches, signatures, `/metrics` snapshot; `charts`: what the
//!   review UI draws (latency histograms, the paired delta, divergence per bucket).
//! - `report`: the serialisable shapes those queries return (docs/api.md).
//! - [`ack`]: acknowledged signatures (who, why, whether the gate leaves them out), kept in a
//!   small JSON file; [`triage`]: their *expected* counts and the suggested rule, pre-checked
//!   with the comparator on the recent events.
//! - `interval`: the wire form of interval statistics and merging it (the fleet aggregator).
//! - `latency`, `skew`, `wilson`, `gate`: histograms, send skew, Wilson intervals, the release
//!   gate's judgement (a pure function of counts); `sequential`: the gate's anytime-valid
//!   confidence sequence (docs/gate.md); [`noise`]: learned noise (its own
//!   [`noise::NoiseConfig`], `noise:`) and the rules it suggests.
//!
//! Memory is bounded: at most `max_endpoints` endpoints (`grouping.max_endpoints`; the rest fold
//! into `OTHER`), at most `max_fields` distinct fields per endpoint and bucket (the rest fold into
//! `(other)`), at most `max_signatures` clusters per endpoint, `recent_events` events. Window
//! buckets allocate their latency histograms lazily, at `window_significant_digits` (default 2:
//! ≈ 10 KiB per histogram, 40 KiB per endpoint-minute, so 15 minutes × 200 busy endpoints
//! ≈ 120 MiB at worst); since-start histograms use 3 significant digits (≈ 136 KiB per
//! histogram).

pub mod ack;
mod charts;
mod config;
mod counts;
mod endpoint_map;
mod gate;
mod interval;
mod latency;
pub mod noise;
pub mod publisher;
mod query;
mod report;
mod sequential;
pub mod skew;
mod store;
pub mod triage;
mod wilson;
mod window;

pub use charts::Charts;
pub use config::StatsConfig;
pub use counts::OTHER_FIELD;
pub use endpoint_map::{DEFAULT_MAX_ENDPOINTS, EndpointMap, OTHER_ENDPOINT, SHARDS};
pub use gate::{
    GateAsk, GateConfig, GateCounts, GateEndpoint, GateEndpointConfig, GateMethod, GateParams,
    GateReport, GateRule, GateVerdict, Judge, Judgement, MinSamplesFor, judge,
};
pub use interval::{
    IntervalDelta, MessageHead, ParsedStats, STATS_SCHEMA, StatsMessage, StatsMessageError,
    WireField, WireLatency,
};
pub use latency::{LatencySet, LatencySummary, MAX_US, Percentiles, SignedPercentiles};
pub use report::{
    ClusterField, DELTA_BUCKETS_S, Divergence, EndpointMetrics, EndpointSummary, FieldStat,
    HistogramBuckets, LATENCY_BUCKETS_S, MismatchQuery, SignatureSummary, Summary, Totals,
};
pub use sequential::{ALPHA, Sequence, Side};
pub use store::Stats;
pub use wilson::{Z95, wilson, wilson95};
pub use window::{Clock, ManualClock, SystemClock, Window, WindowError, format_duration};

#[cfg(test)]
mod tests;
