//! Planted personal data on Kafka (issue 12, hostile suite): the real binary publishes the world
//! of `tests/pii/` to both topics of a real broker (tansu), and the independent consumer
//! (confluent-kafka) reads them back. No key and no value of either topic may hold a planted
//! secret; the keys are the redacted endpoint names, and the statistics count by redacted fields.
//! The sidecar logs at `RUST_LOG=trace` meanwhile (librdkafka's callbacks included), and those
//! logs must be clean too.

use crate::common::free_port;
use crate::harness::{self, Consumed, Tansu, consume, consume_messages, create_topic};
use crate::pii;
use serde_json::Value;

#[test]
fn no_planted_secret_reaches_either_topic_keys_included() {
    let (Some(tansu_bin), Some(py)) = (harness::tansu_bin(), harness::python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start(&tansu_bin, free_port(), dir.path());
    let (events, stats) = ("pii.events", "pii.stats");
    create_topic(&broker.brokers(), events, 1);
    create_topic(&broker.brokers(), stats, 1);
    let sinks = format!(
        "  kafka:\n    brokers: \"{}\"\n    topic: {events}\n    stats_topic: {stats}\n\
         \x20   stats_interval: 1s\n    spool_dir: {}\n",
        broker.brokers(),
        dir.path().join("spool").display(),
    );
    let mut proxy = pii::RealProxy::start(dir.path(), &sinks, false, &[("RUST_LOG", "trace")]);
    proxy.drive_and_wait();
    // SIGTERM flushes the events and the last statistics interval.
    proxy.proc.terminate();

    let n = pii::exchanges() as usize;
    let event_msgs = consume(&py, &broker.brokers(), events, n);
    let stats_msgs = consume_messages(&py, &broker.brokers(), stats, 1);
    for (what, msgs) in [("events", &event_msgs), ("stats", &stats_msgs)] {
        for m in msgs.iter() {
            pii::assert_no_secret(
                &format!("a {what} key"),
                m.key.as_deref().unwrap_or("").as_bytes(),
            );
            pii::assert_no_secret(
                &format!("a {what} value"),
                m.value.as_deref().unwrap_or("").as_bytes(),
            );
        }
    }
    pii::assert_no_secret(
        "the logs (RUST_LOG=trace)",
        &std::fs::read(&proxy.proc.log).unwrap(),
    );

    // Not vacuous: every event arrived, keyed by its redacted endpoint name; the statistics
    // carry the redacted names and fields.
    let values = |msgs: &[Consumed]| -> Vec<Value> {
        msgs.iter()
            .map(|m| serde_json::from_str(m.value.as_deref().unwrap()).unwrap())
            .collect()
    };
    let evs = values(&event_msgs);
    let mut unique = evs.clone();
    unique.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
    unique.dedup_by_key(|e| e["id"].clone());
    pii::assert_events_say_what_differed(&unique);
    for (m, e) in event_msgs.iter().zip(&evs) {
        assert_eq!(
            m.key.as_deref(),
            e["endpoint"].as_str(),
            "keyed by endpoint"
        );
    }
    let keys: Vec<&str> = stats_msgs.iter().filter_map(|m| m.key.as_deref()).collect();
    assert!(
        keys.contains(&"GET /users/<redacted:email>/cards/<redacted:card>"),
        "{keys:?}"
    );
    let fields: Vec<String> = values(&stats_msgs)
        .iter()
        .flat_map(|s| s["fields"].as_array().cloned().unwrap_or_default())
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert!(
        fields.contains(&"/by_email/<redacted:email>/visits".to_string()),
        "{fields:?}"
    );
}
