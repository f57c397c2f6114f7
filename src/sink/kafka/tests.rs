use super::testing::sample_event;
use super::*;
use std::time::Instant;

fn unreachable_config(spool: &std::path::Path) -> KafkaConfig {
    KafkaConfig {
        brokers: super::testing::unreachable_brokers().unwrap(),
        spool_dir: spool.to_path_buf(),
        delivery_timeout: Duration::from_secs(2),
        ..KafkaConfig::default()
    }
}

fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn without_a_broker_everything_is_spooled_and_recovered_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = unreachable_config(dir.path());
    let sink = KafkaSink::start(cfg.clone()).unwrap();
    for n in 0..50 {
        sink.publish(&Arc::new(sample_event(&format!("e{n}"), "GET /a", 100)));
    }
    assert!(
        wait_until(20, || {
            let s = sink.stats();
            s.queued == 0 && s.in_producer == 0 && s.spool_events == 50
        }),
        "{:?}",
        sink.stats()
    );
    sink.shutdown(Duration::from_millis(500));
    let s = sink.stats();
    assert_eq!(
        (s.detected, s.spooled, s.delivered, s.dropped()),
        (50, 50, 0, 0)
    );
    assert!(s.balanced(), "{s:?}");
    drop(sink);

    let again = KafkaSink::start(cfg).unwrap();
    let s = again.stats();
    assert_eq!((s.recovered, s.spool_events), (50, 50), "{s:?}");
    assert!(s.balanced(), "{s:?}");
    // Still no broker: shutdown gives up on the drain batch and the spool keeps it all.
    again.shutdown(Duration::from_millis(200));
    let s = again.stats();
    assert_eq!((s.spool_events, s.delivered), (50, 0), "{s:?}");
    assert!(s.balanced(), "{s:?}");
}

#[test]
fn after_shutdown_events_are_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let sink = KafkaSink::start(unreachable_config(dir.path())).unwrap();
    sink.shutdown(Duration::from_millis(100));
    assert!(!sink.publish(&Arc::new(sample_event("late", "GET /a", 10))));
    let s = sink.stats();
    assert_eq!((s.detected, s.dropped_closed), (1, 1));
    assert!(s.balanced(), "{s:?}");
}

#[test]
fn options_override_our_settings_and_bad_ones_fail_at_start() {
    let mut cfg = KafkaConfig::default();
    cfg.options.insert("acks".into(), "1".into());
    assert_eq!(cfg.client_config().get("acks"), Some("1"));
    assert_eq!(cfg.client_config().get("enable.idempotence"), Some("true"));
    let dir = tempfile::tempdir().unwrap();
    cfg.spool_dir = dir.path().to_path_buf();
    cfg.options.insert("no.such.setting".into(), "x".into());
    let err = KafkaSink::start(cfg).unwrap_err();
    assert!(err.to_string().contains("no.such.setting"), "{err}");
}

#[test]
fn a_sample_event_is_about_two_kilobytes_when_asked() {
    let n = sample_event("x", "GET /a", 1300).to_json_line().len();
    assert!((1800..2400).contains(&n), "{n}");
}
