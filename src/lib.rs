//! shadowdiff: a shadow-traffic comparator sidecar.
//!
//! Map of the crate, in pipeline order (DESIGN.md, "The pipeline"):
//!
//! - [`exchange`]: the data model — a request and the answers of primary, candidate and
//!   secondary, with capped content decoding. Sources produce these.
//! - [`compare`]: the pure, synchronous comparator (`Exchange` → `Verdict`): rules
//!   ([`compare::rules`]), path and endpoint patterns ([`compare::pattern`]), exact numbers
//!   ([`compare::number`]), structural JSON diff, text diff, signature.
//! - [`event`]: the published event (`shadowdiff.exchange.v1`), redacted and truncated.
//! - [`redact`]: everything that makes a published string safe (`redact:`): header values,
//!   JSON paths in bodies and in every difference containing them, query parameters, the
//!   e-mail/card/bearer detectors, the size cap.
//! - [`sink`]: the publish seam — everything after the comparator observes verdicts through
//!   [`sink::Sink`], never blocking the caller; [`sink::file`] writes JSONL with rotation;
//!   [`sink::kafka`] publishes events to Kafka (rdkafka) with a durable disk spool
//!   ([`sink::spool`], redb) for when the broker is away; [`stats::publisher`] publishes
//!   per-endpoint interval statistics (counts, HDR histograms) to the stats topic.
//! - [`config`]: `shadowdiff.yaml` — parsing, validation (every problem at once, with lines)
//!   and the built [`config::ProxyConfig`].
//! - [`ingest`]: sources of exchanges. [`ingest::proxy`] is the inline sidecar (forwarding,
//!   shadowing, circuit breaker, comparison workers); shadows go out on
//!   [`ingest::shadow_client`], names resolve through [`ingest::resolve`];
//!   [`ingest::grouping`] names endpoints.
//! - [`stats`]: divergence statistics — a [`sink::Sink`] counting verdicts, fields and latency
//!   (HDR histograms) per endpoint over a sliding window and since start; Wilson intervals and
//!   the release gate.
//! - [`aggregate`]: `shadowdiff aggregate`, the fleet view — a Kafka consumer merging every
//!   sidecar's interval statistics ([`stats::publisher`], `shadowdiff.stats.v1`) and events into
//!   one [`stats::Stats`], served by the same admin API and UI.
//! - [`admin`]: the admin HTTP server — health, `/metrics`, the JSON API over [`stats`], the
//!   review UI.
//! - [`units`]: durations, sizes and rates as written in config files and flags.
//! - [`demo`]: the self-contained demo (sample services with planted findings).
//! - `yaml_lines`: line numbers for YAML messages (rules and config).
//! - [`cli`]: argument parsing and the subcommands; `main.rs` only calls [`cli::main`].

pub mod admin;
pub mod aggregate;
pub mod app;
pub mod cli;
pub mod compare;
pub mod config;
pub mod demo;
pub mod event;
pub mod exchange;
pub mod ingest;
pub mod pipeline;
pub mod redact;
pub mod sink;
pub mod stats;
pub mod units;
mod yaml_lines;
