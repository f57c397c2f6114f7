//! Sinks: implementations of [`crate::pipeline::Sink`] that publish verdicts. [`file`] writes
//! JSONL with rotation; [`kafka`] publishes events to Kafka (rdkafka) with a durable disk spool
//! ([`spool`], redb) for when the broker is away; [`kafka_stats`] publishes per-endpoint interval
//! statistics to the stats topic.

pub mod file;
pub mod kafka;
pub mod kafka_stats;
pub mod spool;
