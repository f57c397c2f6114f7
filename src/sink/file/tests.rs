#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::compare::{Verdict, VerdictKind};
use crate::event::Event;
use crate::exchange::{Exchange, Request, Response};
use std::time::SystemTime;

fn event(id: &str) -> Arc<Event> {
    let ex = Exchange {
        id: id.into(),
        ts: SystemTime::UNIX_EPOCH,
        source: "proxy",
        endpoint: "GET /x".into(),
        request: Request::default(),
        primary: Response::default(),
        candidate: Err(crate::exchange::UpstreamError::Timeout(
            Duration::from_secs(1),
        )),
        secondary: None,
        sends: None,
    };
    let mut v = Verdict::skipped(crate::compare::SkipReason::SampledOut);
    v.kind = VerdictKind::CandidateError;
    v.skip_reason = None;
    Arc::new(Event::build(&ex, &v, "test", &Default::default()))
}

fn observe(s: &FileSink, ev: Option<&Arc<Event>>) {
    let v = Verdict::skipped(crate::compare::SkipReason::SampledOut);
    s.observe(&Observation {
        ts: SystemTime::UNIX_EPOCH,
        endpoint: "GET /x",
        verdict: &v,
        primary_latency: None,
        candidate_latency: None,
        secondary_latency: None,
        send_skew: None,
        event: ev,
    });
}

fn cfg(path: PathBuf, rotate_bytes: usize, keep: usize, queue: usize) -> FileSinkConfig {
    FileSinkConfig {
        path,
        rotate_bytes,
        keep,
        queue,
    }
}

#[test]
fn writes_events_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/events.jsonl");
    let s = FileSink::open(&cfg(path.clone(), 1 << 20, 3, 64)).unwrap();
    observe(&s, Some(&event("A")));
    observe(&s, None); // a match or a skip: not written
    observe(&s, Some(&event("B")));
    s.shutdown(Duration::from_secs(5));
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Event>(l).unwrap().id)
        .collect();
    assert_eq!(ids, ["A", "B"]);
    assert_eq!(s.counters().snapshot()[0], ("written", 2));
}

#[test]
fn rotates_by_size_keeping_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let line_len = event("XX").to_json_line().len() + 1;
    // Two lines per file.
    let s = FileSink::open(&cfg(path.clone(), line_len * 2, 2, 64)).unwrap();
    for i in 0..7 {
        observe(&s, Some(&event(&format!("E{i}"))));
    }
    s.shutdown(Duration::from_secs(5));
    let ids = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Event>(l).unwrap().id)
            .collect()
    };
    assert_eq!(ids(&path), ["E6"]);
    assert_eq!(ids(&numbered(&path, 1)), ["E4", "E5"]);
    assert_eq!(ids(&numbered(&path, 2)), ["E2", "E3"]);
    assert!(
        !numbered(&path, 3).exists(),
        "only `keep` rotated files remain"
    );
}

#[test]
fn a_full_queue_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let s = FileSink::open(&cfg(path.clone(), 1 << 20, 1, 1)).unwrap();
    // Stop the writer first: nothing drains the queue of one afterwards.
    s.shutdown(Duration::from_secs(5));
    observe(&s, Some(&event("A")));
    observe(&s, Some(&event("B")));
    assert_eq!(s.counters().dropped.load(Ordering::Relaxed), 2);
}
