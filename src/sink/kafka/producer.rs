//! The librdkafka producer stack, one for both producers: the events sink's pump
//! ([`super::pump`]) and the interval-statistics publisher (`stats::publisher`). A producer is
//! made with its own [`Ctx`] ([`create`]); librdkafka calls into the context from `poll()` on the
//! owner's thread, and the context only records — delivery [`Report`]s, and what the error and
//! statistics callbacks say about the brokers — for the owner to read on its next turn.

use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Delivery opaque: the sender's own number for a message, handed back in its [`Report`].
pub(crate) type Opaque = usize;

/// Set in an [`Opaque`] when the sender still holds the message's bytes itself (the pump's
/// spooled records, still on disk): a failure report then carries no copy of the payload.
pub(crate) const PAYLOAD_KEPT: Opaque = 1 << 63;

/// What librdkafka said about one message.
pub(crate) enum Report {
    Delivered(Opaque),
    Failed {
        opaque: Opaque,
        key: Vec<u8>,
        /// The payload, to retry or spool it; `None` when the opaque has [`PAYLOAD_KEPT`].
        payload: Option<Vec<u8>>,
        error: KafkaError,
    },
}

/// What librdkafka's callbacks record, read by the producer's owner.
#[derive(Default)]
struct CtxState {
    reports: Mutex<Vec<Report>>,
    brokers_down: AtomicBool,
    /// From the latest statistics: some broker connection is up (librdkafka state `UP`).
    broker_up: AtomicBool,
    /// From the latest statistics, for the watchdog's log line: the idempotent producer's
    /// state, id and epoch.
    idempotence: Mutex<(String, i64, i64)>,
}

/// The producer context. Each producer gets its own, so that a replaced producer's late
/// callbacks (its purge reports, a last error) cannot be mistaken for the new one's; the pump
/// collects the old one's reports after dropping it. Both producers record the same things; the
/// statistics publisher reads only the reports (it has no spool to fall back on, so nothing to
/// do about a broker being down).
#[derive(Clone)]
pub(crate) struct Ctx {
    state: Arc<CtxState>,
    /// Which producer this is (`events`, `stats`), in log lines.
    name: &'static str,
}

impl Ctx {
    pub(crate) fn new(name: &'static str) -> Ctx {
        Ctx {
            state: Arc::default(),
            name,
        }
    }

    pub(crate) fn reports_len(&self) -> usize {
        self.state.reports.lock().len()
    }

    pub(crate) fn take_reports(&self) -> Vec<Report> {
        std::mem::take(&mut *self.state.reports.lock())
    }

    /// Whether librdkafka reported "all brokers down" since the last call.
    pub(crate) fn take_brokers_down(&self) -> bool {
        self.state.brokers_down.swap(false, Relaxed)
    }

    /// Whether the latest statistics showed a broker connection up.
    pub(crate) fn broker_up(&self) -> bool {
        self.state.broker_up.load(Relaxed)
    }

    /// The idempotent producer's state, id and epoch from the latest statistics.
    pub(crate) fn idempotence(&self) -> (String, i64, i64) {
        self.state.idempotence.lock().clone()
    }
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.state.brokers_down.store(true, Relaxed);
                tracing::debug!(producer = self.name, error = %error, reason, "kafka: all brokers down");
            }
            // A fatal error does not arrive here as `_FATAL`: the event API hands it over under
            // its underlying code (e.g. UNKNOWN_PRODUCER_ID) with a separate "fatal" flag that
            // rdkafka does not pass on. The pump asks `fatal_error()` instead.
            // librdkafka logs these itself (connection failures repeat while a broker is away).
            _ => {
                tracing::debug!(producer = self.name, error = %error, reason, "kafka client error")
            }
        }
    }

    /// Overridden for every producer: rdkafka's default logs the whole statistics document at
    /// `info` each `statistics.interval.ms`.
    fn stats(&self, stats: rdkafka::Statistics) {
        // Bootstrap and learned brokers are real connections; the internal and logical ones
        // are not.
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && matches!(b.source.as_str(), "learned" | "configured"));
        self.state.broker_up.store(up, Relaxed);
        if let Some(eos) = stats.eos {
            *self.state.idempotence.lock() = (eos.idemp_state, eos.producer_id, eos.producer_epoch);
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Opaque;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Opaque) {
        let r = match result {
            Ok(_) => Report::Delivered(opaque),
            Err((error, msg)) => Report::Failed {
                opaque,
                key: msg.key().map(<[u8]>::to_vec).unwrap_or_default(),
                payload: (opaque & PAYLOAD_KEPT == 0)
                    .then(|| msg.payload().map(<[u8]>::to_vec))
                    .flatten(),
                error: error.clone(),
            },
        };
        self.state.reports.lock().push(r);
    }
}

/// A producer with `config`, reporting to `ctx` (a clone of it is kept by the producer).
pub(crate) fn create(config: &ClientConfig, ctx: &Ctx) -> Result<BaseProducer<Ctx>, KafkaError> {
    config.create_with_context(ctx.clone())
}

/// Kafka refused the message itself: retrying or spooling cannot help.
pub(crate) fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidArgument)
    )
}
