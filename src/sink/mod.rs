//! Sinks: implementations of [`crate::pipeline::Sink`] that publish verdicts.
//! [`file`](mod@file) writes JSONL with rotation; [`kafka`] publishes events to Kafka (rdkafka)
//! with a durable disk spool ([`spool`], redb) for when the broker is away. (The interval
//! statistics go to Kafka through the statistics publisher, `stats::publisher`, on the same
//! producer stack.)

pub mod file;
pub mod kafka;
pub mod spool;
