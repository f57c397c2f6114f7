//! `sinks.kafka`: the one configuration of the Kafka producers, read from the YAML file as it is
//! and run with as it is (no hand-copied twin to forget a field on the way). The events sink
//! ([`super::KafkaSink`]) and the interval-statistics publisher (`stats::publisher`) both build
//! their librdkafka producer from [`KafkaConfig::client_config`].

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// librdkafka's own statistics period (`statistics.interval.ms`, not `stats_interval`): how fast
/// the pump learns that a broker connection is up.
pub(super) const CLIENT_STATS_INTERVAL_MS: u64 = 1000;

/// Configuration of the Kafka sink and the statistics publisher: `sinks.kafka` in the YAML
/// config. Every field is optional there; defaults are given per field ([`KafkaConfig::default`]).
/// Values are checked as they are parsed (sizes, durations), each bad one reported with its line;
/// librdkafka settings (`compression`, `options`) are checked when the sidecar starts, before it
/// takes traffic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port` (`bootstrap.servers`).
    /// Default `127.0.0.1:9092`. Each written port must be 1 to 65535.
    #[serde(deserialize_with = "crate::units::de::brokers")]
    pub brokers: String,
    /// Topic the events (`shadowdiff.exchange.v1`) are published to, keyed by endpoint.
    /// Default `shadowdiff.events`.
    pub topic: String,
    /// Topic of the interval statistics, written by the statistics publisher (not by the events
    /// sink) and read by `shadowdiff aggregate`. Default `shadowdiff.stats`.
    pub stats_topic: String,
    /// How often per-endpoint interval statistics are published to `stats_topic`; intervals are
    /// aligned to multiples of it on the wall clock, so a fleet flushes together. At least
    /// `100ms` (checked with the rest of the file). Default `10s`.
    #[serde(deserialize_with = "crate::units::de::positive_duration")]
    pub stats_interval: Duration,
    /// Directory of the disk spool (`events.redb` inside); must be on a persistent volume for
    /// the restart guarantee. Default `/var/lib/shadowdiff/spool`.
    pub spool_dir: PathBuf,
    /// Bound of the spool: keys + payloads + 8 bytes per record. Beyond it new events are
    /// dropped and counted (`dropped_spool_full`). At least 1 byte. Default `1GiB`.
    #[serde(deserialize_with = "size_u64")]
    pub spool_max_bytes: u64,
    /// Events waiting between `observe` and the pump thread. Beyond it `observe` drops and
    /// counts (`dropped_queue_full`) rather than block a comparison worker. Default `65536`.
    #[serde(deserialize_with = "crate::units::de::positive")]
    pub queue_capacity: usize,
    /// `compression.type`: `lz4` (default), `zstd`, `gzip`, `snappy` or `none`.
    /// (`zstd` needs librdkafka built with zstd; the bundled build here has lz4 and gzip.)
    pub compression: String,
    /// How long librdkafka keeps trying one message before failing it to the spool
    /// (`message.timeout.ms`, where 0 would mean forever); more than 0. Default `30s`.
    #[serde(deserialize_with = "crate::units::de::positive_duration")]
    pub delivery_timeout: Duration,
    /// Producer local queue bound in messages (`queue.buffering.max.messages`; librdkafka's own
    /// default allows far more). Default `100000`.
    pub max_buffered_messages: u32,
    /// Producer local queue bound in KiB (`queue.buffering.max.kbytes`; librdkafka's default is
    /// 1 GiB). Default `65536` (64 MiB).
    pub max_buffered_kbytes: u32,
    /// Raw librdkafka settings, applied last: they override everything above
    /// (for example `security.protocol`, `sasl.*`, `linger.ms`). Default empty.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "shadowdiff.events".into(),
            stats_topic: "shadowdiff.stats".into(),
            stats_interval: Duration::from_secs(10),
            spool_dir: PathBuf::from("/var/lib/shadowdiff/spool"),
            spool_max_bytes: 1 << 30,
            queue_capacity: 65_536,
            compression: "lz4".into(),
            delivery_timeout: Duration::from_secs(30),
            max_buffered_messages: 100_000,
            max_buffered_kbytes: 64 << 10,
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The librdkafka producer configuration: our settings, then `options` on top.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "shadowdiff")
            // Idempotence: librdkafka's own retries never duplicate or reorder within a
            // partition, so duplicates can only come from our spool (recognisable by `id`).
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            .set(
                "queue.buffering.max.messages",
                self.max_buffered_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                self.max_buffered_kbytes.to_string(),
            )
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().max(1).to_string(),
            )
            // Reconnect within a second of the broker coming back (librdkafka's default backs
            // off to 10 s), so the spool starts draining promptly.
            .set("reconnect.backoff.max.ms", "1000")
            // Statistics tell the pump whether a broker connection is up, which the
            // stuck-producer watchdog needs (see `Pump::check_stall`). 0 disables both.
            .set(
                "statistics.interval.ms",
                CLIENT_STATS_INTERVAL_MS.to_string(),
            );
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

/// A size (`1GiB`, or a bare number of bytes) as the spool counts it.
fn size_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    // usize is at most 64 bits on every target this builds for.
    crate::units::de::positive_size(d).map(|n| n as u64)
}
