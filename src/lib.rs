//! shadowdiff: a shadow-traffic comparator sidecar.
//!
//! Map of the crate, in pipeline order (DESIGN.md, "The pipeline"):
//!
//! - [`exchange`]: the data model — a request and the answers of primary, candidate and
//!   secondary, with capped content decoding. Sources produce these.
//! - [`compare`]: the pure, synchronous comparator (`Exchange` → `Verdict`): rules
//!   ([`compare::rules`]), path and endpoint patterns ([`compare::pattern`]), exact numbers
//!   ([`compare::number`]), structural JSON diff (bodies scanned into flat tapes and walked
//!   together, no `Value` trees: `compare/scan`), text diff (noise judged line by line against
//!   the secondary's body), verdicts, kinds and signature (`compare/verdict.rs`), the per-exchange noise marking ([`compare::noise`]), gRPC
//!   messages decoded for that diff ([`compare::grpc`]: framing, schema-less or by descriptor
//!   set). No I/O, no clock, no state.
//! - [`yaml`] and [`units`]: what every config section and the rules share — the one
//!   [`yaml::Problem`] (file, line, rule, reason), the limits a text meets before it is parsed
//!   (`yaml/limits.rs`: size, nesting depth, alias expansion), and durations, sizes, rates and
//!   the serde value parsers (`units::de`: ports, positive durations and sizes).
//! - [`event`]: the published event (`shadowdiff.exchange.v1`), redacted and truncated.
//! - [`redact`]: everything that makes a published string safe (`redact:`): header values,
//!   JSON paths in bodies and in every difference containing them, query parameters, the
//!   e-mail/card/bearer detectors, the size cap; and the published names of differences
//!   (`redact/names.rs`), which statistics count by.
//! - [`pipeline`]: the seam between sources and everything after the comparator —
//!   [`pipeline::Observation`], [`pipeline::Sink`], [`pipeline::Fanout`], [`pipeline::Refine`],
//!   the bounded comparison pool ([`pipeline::pool`]) behind [`pipeline::Pipeline`], the shadow
//!   memory budget ([`pipeline::budget`]) and the metric families components report
//!   ([`pipeline::metrics`]). It names no implementation.
//! - [`sink`]: sinks — [`sink::file`] writes JSONL with rotation; [`sink::kafka`] publishes
//!   events to Kafka (rdkafka: `config`, `producer`, `pump`) with a durable disk spool
//!   ([`sink::spool`], redb).
//! - [`record`]: recordings (`shadowdiff.recording.v1`): the line format, its redaction, the
//!   reader `replay` uses and the [`record::writer::Recorder`] behind the proxy's `record:`
//!   (a [`pipeline::Tap`] on the comparison workers, bounded, rotated, every drop counted).
//! - [`stats`]: divergence statistics — a [`pipeline::Sink`] counting verdicts, fields and
//!   latency per endpoint ([`stats::EndpointMap`]) over a sliding window and since start; the
//!   learned noise model ([`stats::noise`], the pipeline's `Refine`, and the rules it suggests
//!   with their evidence); acknowledged signatures and their suggested rules ([`stats::ack`],
//!   [`stats::triage`]); Wilson intervals and the release gate, a pure function of counts
//!   judged by default on an anytime-valid confidence sequence (docs/gate.md); [`stats::publisher`] sends per-endpoint interval statistics to Kafka on the
//!   Kafka sink's producer.
//! - [`ingest`]: sources of exchanges. [`ingest::proxy`] is the inline sidecar's request path,
//!   [`ingest::inbound`] its client connections under `limits:` (timeouts, connection cap, head
//!   size, accept back-off, descriptor budget), [`ingest::circuit`] its breaker and
//!   `ingest::shadow` the background shadow task (`shadow/send.rs`: one request on the wire); shadows go out on [`ingest::shadow_client`]
//!   (whose answer reader `fuzz/` drives through `shadow_client::fuzzing`), or over HTTP/2 on
//!   [`ingest::shadow_h2`] (`protocol: h2`), whose socket work
//!   runs on the lower-priority thread of [`ingest::background`], into budgeted
//!   [`ingest::buffer`]s; names resolve through [`ingest::resolve`]; `https://` upstreams go
//!   through [`ingest::tls`] (the `tls:` section, one rustls client per upstream, the plain/TLS
//!   [`ingest::tls::Conn`] and the primary's connector); [`ingest::rewrite`] changes shadow
//!   copies (`shadow.candidate`: path prefix, regex rewrites); [`ingest::grouping`] names
//!   endpoints (redacted); [`ingest::config`] is the proxy's config.
//! - [`capture`]: the passive source (`shadowdiff capture`) — link layers and IPv4 fragments
//!   ([`capture::packet`], etherparse), our own pure TCP reassembly ([`capture::tcp`], fuzzed),
//!   HTTP/1.x on both directions paired in order ([`capture::http`], httparse), the connection
//!   table with its bounds and completeness counts ([`capture::tracker`], [`capture::counts`]),
//!   libpcap for files and interfaces ([`capture::source`]). It hands out
//!   [`capture::CapturedExchange`]s, which `capture --candidate` compares through
//!   [`ingest::recorded`] and `capture --record` writes through [`record`].
//! - [`config`]: `shadowdiff.yaml` — one struct aggregating each component's own section,
//!   validated at once (every problem, with lines), and the rules it names.
//! - [`admin`]: the admin HTTP server — health, `/metrics`, the JSON API over [`stats`], the
//!   triage routes (acknowledging a signature: the only writes, token required), the review UI
//!   (its charts in `admin/charts.js`, over `/api/v1/charts`).
//! - [`aggregate`]: `shadowdiff aggregate`, the fleet view — a Kafka consumer merging every
//!   sidecar's interval statistics and events into one [`stats::Stats`].
//! - [`app`]: the one wiring — [`app::Sidecar::start`] builds statistics, noise, sinks, the
//!   pipeline, the source and the admin server; [`app::Aggregator`] the fleet view;
//!   [`app::reload`] swaps the rules, redaction, sampling and gate thresholds of a running
//!   sidecar on SIGHUP and file changes (the pipeline's [`pipeline::Stage`], the admin server's
//!   redaction, the recorder's), and the fleet view's gate thresholds and redaction.
//! - [`demo`]: the self-contained demo (sample services with planted findings), started through
//!   [`app`].
//! - [`cli`]: argument parsing and dispatch; `cli/serve.rs` runs `proxy` and `aggregate`
//!   through [`app`], `cli/check.rs`, `cli/diff.rs` and `cli/gate.rs` the other commands;
//!   `cli/replay.rs` runs `replay` (recordings and pcap files) and `cli/capture.rs` runs
//!   `capture`, whose `cli/capture/handoff.rs` sends each captured exchange to the comparison
//!   ([`app::Recorded`]) and the recorder;
//!   `main.rs` only calls [`cli::main`].
//!
//! Layers (a module uses only modules before it; no two modules import each other):
//! `exchange → yaml → compare → units → redact → event → pipeline → sink → record → stats →
//! ingest → capture → admin → config → aggregate → app → demo → cli` (enforced by `tests/layers.rs`). Component
//! configs live with their component; [`config`] only aggregates them, so nothing below it
//! reads the config file's struct.

pub mod admin;
pub mod aggregate;
pub mod app;
pub mod capture;
pub mod cli;
pub mod compare;
pub mod config;
pub mod demo;
pub mod event;
pub mod exchange;
pub mod ingest;
pub mod pipeline;
pub mod record;
pub mod redact;
pub mod sink;
pub mod stats;
pub mod units;
pub mod yaml;
