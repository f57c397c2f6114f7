//! `shadowdiff aggregate`: the fleet view (DESIGN.md, "Command line"; docs/kafka.md).
//!
//! A Kafka consumer, in a consumer group, reads every sidecar's statistics (`stats_topic`,
//! `shadowdiff.stats.v1`) and events (`topic`, `shadowdiff.exchange.v1`) and feeds one
//! [`Stats`]; the admin router serves the same API and UI as a sidecar over it.
//!
//! ```text
//! stats_topic ──┐                         ┌─ merge_interval (counts, fields, latency)
//!               ├─> consumer thread ──────┤                                         ──> Stats ──> admin API / UI
//! topic ────────┘   (dedup, bounded)      └─ record_event (recent feed, signatures)
//! ```
//!
//! Delivery is at least once, so both kinds are de-duplicated: events by `id`, statistics by
//! `(instance, run, seq)`, each in a bounded memory of recent keys (a copy older than that memory
//! would be counted twice; Kafka's own duplicates arrive close together).
//!
//! State lives in memory only. The aggregator commits no offsets: on every start it reads each
//! assigned partition from the earliest retained message and rebuilds its figures, so a restart
//! loses nothing the topics still hold, and "since start" means "since the oldest retained
//! message". Windows follow the sidecars' interval end times, not the time of reading.

use crate::admin::{AdminState, MetricFamily};
use crate::event::Event;
use crate::stats::{Stats, StatsMessage};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the aggregator runs with. Built by the CLI from flags and, optionally, a config file.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    /// Bootstrap brokers (`bootstrap.servers`).
    pub brokers: String,
    /// Events topic. Default `shadowdiff.events`.
    pub topic: String,
    /// Statistics topic. Default `shadowdiff.stats`.
    pub stats_topic: String,
    /// Consumer group. Default `shadowdiff-aggregate`. Replicas that must each see everything
    /// use different groups; members of one group split the partitions (docs/kafka.md).
    pub group: String,
    /// Admin API / UI address. Default `127.0.0.1:9901`.
    pub admin: SocketAddr,
    /// Raw librdkafka consumer settings, applied last. Default none.
    pub options: BTreeMap<String, String>,
    /// Event ids remembered for de-duplication. Default 100 000.
    pub dedup_events: usize,
    /// Statistics message keys remembered for de-duplication. Default 100 000.
    pub dedup_stats: usize,
}

impl AggregateConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "shadowdiff.events".into(),
            stats_topic: "shadowdiff.stats".into(),
            group: "shadowdiff-aggregate".into(),
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
            options: BTreeMap::new(),
            dedup_events: 100_000,
            dedup_stats: 100_000,
        }
    }

    /// The librdkafka consumer configuration: ours, then `options` on top.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("client.id", "shadowdiff-aggregate")
            // State is rebuilt from the topics on every start (see the module documentation).
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Range assignment gives one member the same partition numbers of both topics, so
            // with co-partitioned topics (keyed by endpoint) an endpoint's counts and events
            // land on the same aggregator.
            .set("partition.assignment.strategy", "range")
            .set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("kafka consumer: {0}")]
    Consumer(#[from] KafkaError),
    #[error("cannot bind the admin address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the consumer thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
}

/// Message counts per topic and outcome, for `/metrics`
/// (`shadowdiff_aggregate_messages_total{topic,outcome}`).
#[derive(Debug, Default)]
pub struct AggregateCounters {
    pub stats_applied: AtomicU64,
    pub stats_duplicate: AtomicU64,
    pub stats_invalid: AtomicU64,
    pub events_applied: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_invalid: AtomicU64,
    /// Consumer errors reported by librdkafka (the consumer keeps going).
    pub errors: AtomicU64,
    /// Partitions assigned to this member now.
    pub partitions: AtomicU64,
}

impl AggregateCounters {
    /// `(topic, outcome, count)` triples in a stable order.
    pub fn snapshot(&self) -> [(&'static str, &'static str, u64); 6] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("stats", "applied", l(&self.stats_applied)),
            ("stats", "duplicate", l(&self.stats_duplicate)),
            ("stats", "invalid", l(&self.stats_invalid)),
            ("events", "applied", l(&self.events_applied)),
            ("events", "duplicate", l(&self.events_duplicate)),
            ("events", "invalid", l(&self.events_invalid)),
        ]
    }
}

/// A set that remembers the last `cap` keys inserted (first in, first out).
#[derive(Debug)]
pub struct RecentSet<K> {
    set: HashSet<K>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone> RecentSet<K> {
    pub fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Inserts `k`; false when it was already remembered.
    pub fn insert(&mut self, k: K) -> bool {
        if self.set.contains(&k) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(k.clone());
        self.set.insert(k);
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Applies consumed messages to the statistics; the part of the aggregator that needs no broker.
pub struct Applier {
    stats: Arc<Stats>,
    counters: Arc<AggregateCounters>,
    seen_events: RecentSet<String>,
    seen_stats: RecentSet<(String, String, u64)>,
}

impl Applier {
    pub fn new(stats: Arc<Stats>, counters: Arc<AggregateCounters>, cfg: &AggregateConfig) -> Self {
        Self {
            stats,
            counters,
            seen_events: RecentSet::new(cfg.dedup_events),
            seen_stats: RecentSet::new(cfg.dedup_stats),
        }
    }

    /// One statistics message.
    pub fn stats_message(&mut self, payload: &[u8]) {
        let c = &self.counters;
        match StatsMessage::parse(payload) {
            Ok(p) => {
                if self.seen_stats.insert((p.instance, p.run, p.seq)) {
                    self.stats.merge_interval(p.end, &p.endpoint, &p.delta);
                    c.stats_applied.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.stats_duplicate.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                c.stats_invalid.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "aggregate: invalid stats message skipped");
            }
        }
    }

    /// One event.
    pub fn event(&mut self, payload: &[u8]) {
        let c = &self.counters;
        match serde_json::from_slice::<Event>(payload) {
            Ok(ev) if ev.schema == crate::event::SCHEMA => {
                if self.seen_events.insert(ev.id.clone()) {
                    self.stats.record_event(Arc::new(ev));
                    c.events_applied.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.events_duplicate.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(ev) => {
                c.events_invalid.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(schema = %ev.schema, "aggregate: event of an unknown schema skipped");
            }
            Err(e) => {
                c.events_invalid.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "aggregate: invalid event skipped");
            }
        }
    }
}

/// Consumer callbacks: readiness on the first assignment, partition count for `/metrics`.
struct Ctx {
    ready: Arc<AtomicBool>,
    counters: Arc<AggregateCounters>,
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %error, reason, "aggregate: kafka client error");
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.counters
                    .partitions
                    .store(tpl.count() as u64, Ordering::Relaxed);
                tracing::info!(partitions = tpl.count(), "aggregate: partitions assigned");
                self.ready.store(true, Ordering::Release);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "aggregate: partitions revoked");
                self.counters.partitions.store(0, Ordering::Relaxed);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "aggregate: rebalance error"),
        }
    }
}

/// The running consumer; stops (and joins its thread) on [`Consumer::stop`] or drop.
pub struct AggregateConsumer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AggregateConsumer {
    /// Subscribes to both topics and starts consuming into `stats` on a thread of its own.
    pub fn start(
        cfg: &AggregateConfig,
        stats: Arc<Stats>,
        counters: Arc<AggregateCounters>,
        ready: Arc<AtomicBool>,
    ) -> Result<AggregateConsumer, AggregateError> {
        let ctx = Ctx {
            ready,
            counters: Arc::clone(&counters),
        };
        let consumer: BaseConsumer<Ctx> = cfg.client_config().create_with_context(ctx)?;
        consumer.subscribe(&[cfg.topic.as_str(), cfg.stats_topic.as_str()])?;
        let mut applier = Applier::new(stats, counters.clone(), cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let (topic, stats_topic) = (cfg.topic.clone(), cfg.stats_topic.clone());
        let thread = std::thread::Builder::new()
            .name("shadowdiff-aggregate".into())
            .spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    let Some(r) = consumer.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    match r {
                        Ok(m) => {
                            let payload = m.payload().unwrap_or_default();
                            if m.topic() == stats_topic {
                                applier.stats_message(payload);
                            } else if m.topic() == topic {
                                applier.event(payload);
                            }
                        }
                        Err(e) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, "aggregate: consume error");
                        }
                    }
                }
                consumer.unsubscribe();
            })
            .map_err(AggregateError::Thread)?;
        Ok(AggregateConsumer {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("aggregate consumer thread panicked");
        }
    }
}

impl Drop for AggregateConsumer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/metrics` additions of the aggregator, reported by its own counters.
impl crate::admin::MetricsSource for AggregateCounters {
    fn collect(&self) -> Vec<MetricFamily> {
        let counters = self;
        let mut m = MetricFamily::counter(
            "shadowdiff_aggregate_messages_total",
            "Messages consumed by the aggregator per topic and outcome",
        );
        for (topic, outcome, n) in counters.snapshot() {
            m = m.with(&[("topic", topic), ("outcome", outcome)], n as f64);
        }
        vec![
            m,
            MetricFamily::gauge(
                "shadowdiff_aggregate_partitions",
                "Partitions assigned to this aggregator",
                counters.partitions.load(Ordering::Relaxed) as f64,
            ),
        ]
    }
}

/// Runs the aggregator until `shutdown` completes: binds the admin address (before consuming,
/// so a taken port fails fast), starts the consumer, serves `state`'s API and UI. `/readyz`
/// answers 200 once the group gave this member its partitions.
pub async fn run(
    cfg: AggregateConfig,
    mut state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AggregateError> {
    let listener = tokio::net::TcpListener::bind(cfg.admin)
        .await
        .map_err(|source| AggregateError::Bind {
            addr: cfg.admin,
            source,
        })?;
    let counters = Arc::new(AggregateCounters::default());
    state =
        state.with_metrics_source(Arc::clone(&counters) as Arc<dyn crate::admin::MetricsSource>);
    let mut consumer =
        AggregateConsumer::start(&cfg, state.stats.clone(), counters, state.ready.clone())?;
    tracing::info!(
        admin = %cfg.admin,
        brokers = %cfg.brokers,
        topic = %cfg.topic,
        stats_topic = %cfg.stats_topic,
        group = %cfg.group,
        "aggregate: consuming; admin API and UI up"
    );
    let served = crate::admin::serve(listener, state, shutdown).await;
    // Joining the consumer blocks for up to one poll: off the async threads.
    let _ = tokio::task::spawn_blocking(move || consumer.stop()).await;
    tracing::info!("aggregate: stopped");
    served.map_err(AggregateError::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::compare::{SkipReason, Verdict};
    use crate::pipeline::Observation;
    use crate::stats::{IntervalDelta, MessageHead, StatsConfig, Window};
    use std::time::SystemTime;

    #[test]
    fn recent_set_forgets_the_oldest() {
        let mut s = RecentSet::new(2);
        assert!(s.insert(1));
        assert!(!s.insert(1));
        assert!(s.insert(2));
        assert!(s.insert(3));
        assert_eq!(s.len(), 2);
        assert!(s.insert(1), "1 was forgotten when 3 came");
        assert!(!s.insert(3));
    }

    /// Copies of a statistics message or an event (at-least-once delivery) count once; invalid
    /// messages are counted and skipped.
    #[test]
    fn duplicates_are_applied_once_and_counted() {
        let stats = Arc::new(Stats::new(
            StatsConfig::default(),
            crate::stats::DEFAULT_MAX_ENDPOINTS,
        ));
        let counters = Arc::new(AggregateCounters::default());
        let mut a = Applier::new(stats.clone(), counters.clone(), &AggregateConfig::new("x"));
        let v = Verdict::skipped(SkipReason::SampledOut);
        let mut d = IntervalDelta::new();
        for _ in 0..3 {
            d.record(
                &Observation {
                    ts: SystemTime::now(),
                    endpoint: "GET /a",
                    verdict: &v,
                    primary_latency: None,
                    candidate_latency: None,
                    secondary_latency: None,
                    send_skew: None,
                    event: None,
                },
                10,
            );
        }
        let now = SystemTime::now();
        let msg = |run: &str, seq| {
            d.to_message(MessageHead {
                instance: "a",
                run,
                seq,
                start: now,
                end: now,
                endpoint: "GET /a",
            })
            .unwrap()
            .to_json()
        };
        a.stats_message(msg("r1", 0).as_bytes());
        a.stats_message(msg("r1", 0).as_bytes());
        a.stats_message(msg("r1", 1).as_bytes());
        // Same instance name and seq, another run (a restart): not a duplicate.
        a.stats_message(msg("r2", 0).as_bytes());
        a.stats_message(b"{}");
        let ev = crate::sink::kafka::testing::sample_event("01EV", "GET /a", 10).to_json_line();
        a.event(ev.as_bytes());
        a.event(ev.as_bytes());
        a.event(b"not json");
        assert_eq!(stats.summary(Window::All, 5).totals.exchanges, 9);
        assert_eq!(stats.signatures(None)[0].count, 1);
        assert_eq!(
            counters.snapshot(),
            [
                ("stats", "applied", 3),
                ("stats", "duplicate", 1),
                ("stats", "invalid", 1),
                ("events", "applied", 1),
                ("events", "duplicate", 1),
                ("events", "invalid", 1),
            ]
        );
    }
}
