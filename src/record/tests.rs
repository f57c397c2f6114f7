#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::reader::Reader;
use super::writer::{RecordConfig, Recorder};
use super::*;
use std::io::Cursor;
use std::sync::atomic::Ordering;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn request(headers: &[(&str, &str)], body: &[u8]) -> Request {
    let mut h = HeaderMap::new();
    for (n, v) in headers {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Request {
        method: "GET".into(),
        path: "/orders/42".into(),
        query: Some("expand=items&token=s3cr3t".into()),
        headers: h,
        body: Bytes::copy_from_slice(body),
    }
}

fn response(headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let mut h = HeaderMap::new();
    for (n, v) in headers {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Response {
        status: 200,
        headers: h,
        body: Bytes::from(body),
        latency: Duration::from_micros(1830),
    }
}

#[test]
fn a_recording_round_trips_headers_in_order_and_binary_bodies_as_base64() {
    let q = request(
        &[
            ("host", "orders"),
            ("accept", "*/*"),
            ("x-b", "1"),
            ("x-b", "2"),
        ],
        b"",
    );
    let gz = gzip(br#"{"total": 9.99}"#);
    let p = response(
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        gz.clone(),
    );
    let ts = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let rec = Recording::new(ts, "proxy", &q, &p);
    let line = rec.to_json_line();
    assert!(
        line.starts_with(r#"{"schema":"shadowdiff.recording.v1""#),
        "{line}"
    );
    assert!(line.contains(r#"["x-b","1"],["x-b","2"]"#), "{line}");
    assert!(line.contains(r#""body":{"base64":"#), "{line}");
    assert!(
        line.contains(r#""body":null"#),
        "empty request body is null: {line}"
    );
    let back = Recording::from_json(&line).unwrap();
    assert_eq!(back, rec);
    assert_eq!(back.time(), ts);
    let (q2, p2) = back.to_exchange_parts().unwrap();
    assert_eq!(q2.query.as_deref(), Some("expand=items&token=s3cr3t"));
    let xb: Vec<_> = q2.headers.get_all("x-b").iter().collect();
    assert_eq!(xb, ["1", "2"]);
    assert_eq!(p2.body, Bytes::from(gz), "gzip stays gzip, byte for byte");
    assert_eq!(p2.latency, Duration::from_micros(1830));
}

#[test]
fn the_design_example_line_reads() {
    let line = r#"{"schema":"shadowdiff.recording.v1","id":"01J","ts":"2026-11-23T10:00:00.123Z","source":"capture",
 "request":{"method":"GET","path":"/orders/42","query":"expand=items","headers":[["host","orders"],["accept","*/*"]],"body":null},
 "primary":{"status":200,"latency_us":1830,"headers":[["content-type","application/json"]],"body":"{\"total\": 9.99}"}}"#;
    let rec = Recording::from_json(&line.replace('\n', "")).unwrap();
    let (_, p) = rec.to_exchange_parts().unwrap();
    assert_eq!(p.body, Bytes::from_static(br#"{"total": 9.99}"#));
}

#[test]
fn redaction_masks_what_events_hide_and_keeps_clean_bodies_byte_for_byte() {
    let q = request(
        &[("authorization", "Bearer abc.def.ghi"), ("accept", "*/*")],
        b"",
    );
    // A gzip body with an e-mail in it: decoded, masked, gzipped again.
    let dirty = gzip(br#"{"email": "jane@example.com", "n": 1}"#);
    let p = response(&[("content-encoding", "gzip")], dirty);
    let mut rec = Recording::new(SystemTime::now(), "proxy", &q, &p);
    let clean_body = gzip(br#"{"n":   1}"#);
    let mut clean = Recording::new(
        SystemTime::now(),
        "proxy",
        &q,
        &response(&[("content-encoding", "gzip")], clean_body.clone()),
    );
    let r = RecordRedaction::new(&RedactConfig::default(), 1 << 20);
    r.apply(&mut rec);
    r.apply(&mut clean);
    let line = rec.to_json_line();
    assert!(!line.contains("abc.def.ghi"), "{line}");
    assert!(!line.contains("s3cr3t"), "{line}");
    assert!(line.contains(r#"["authorization","<redacted>"]"#), "{line}");
    let (_, p) = rec.to_exchange_parts().unwrap();
    let decoded = crate::exchange::decode_body(&p.headers, &p.body, 1 << 20).unwrap();
    let text = String::from_utf8(decoded.to_vec()).unwrap();
    assert!(!text.contains("jane@example.com"), "{text}");
    assert!(text.contains("\"n\":1"), "{text}");
    let (_, p) = clean.to_exchange_parts().unwrap();
    assert_eq!(
        p.body,
        Bytes::from(clean_body),
        "nothing hidden: same bytes"
    );
}

#[test]
fn the_reader_reports_bad_lines_by_number_and_goes_on() {
    let good = Recording::new(
        SystemTime::now(),
        "proxy",
        &request(&[], b"{}"),
        &response(&[], b"ok".to_vec()),
    )
    .to_json_line();
    let text = format!("{good}\n\nnot json\n{{\"schema\":\"other\"}}\n{good}\n");
    let out: Vec<_> = Reader::new(Cursor::new(text)).collect();
    assert_eq!(out.len(), 4);
    assert!(out[0].is_ok() && out[3].is_ok());
    assert_eq!(out[1].as_ref().unwrap_err().line, 3);
    let e = out[2].as_ref().unwrap_err();
    assert_eq!(e.line, 4);
    assert!(e.reason.contains("schema"), "{e}");
}

#[test]
fn the_recorder_samples_redacts_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.jsonl");
    let cfg = RecordConfig {
        path: path.clone(),
        sample: 1.0,
        rotate_bytes: 2048,
        keep: 2,
        queue: 1024,
        redact: true,
    };
    let rec = Recorder::open(&cfg, &RedactConfig::default(), 1 << 20).unwrap();
    let q = request(&[("cookie", "session=abc")], b"");
    for _ in 0..40 {
        assert!(rec.offer(
            SystemTime::now(),
            "proxy",
            &q,
            &response(&[], vec![b'x'; 200])
        ));
    }
    rec.shutdown(Duration::from_secs(5));
    let c = rec.counters().snapshot();
    assert_eq!(c[0], ("written", 40));
    let mut lines = 0;
    for p in [
        path.clone(),
        dir.path().join("rec.jsonl.1"),
        dir.path().join("rec.jsonl.2"),
    ] {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.len() <= 2048,
            "{} is {} bytes",
            p.display(),
            text.len()
        );
        assert!(!text.contains("session=abc"));
        lines += Reader::new(Cursor::new(text)).filter(|r| r.is_ok()).count();
    }
    assert!(!dir.path().join("rec.jsonl.3").exists(), "keep: 2");
    assert!(lines < 40 && lines > 0, "older files rotated away: {lines}");

    // A sample of 0 records nothing and counts it.
    let none = Recorder::open(
        &RecordConfig {
            sample: 0.0,
            path: dir.path().join("none.jsonl"),
            ..cfg
        },
        &RedactConfig::default(),
        1 << 20,
    )
    .unwrap();
    assert!(!none.offer(SystemTime::now(), "proxy", &q, &response(&[], vec![])));
    none.shutdown(Duration::from_secs(5));
    assert_eq!(none.counters().snapshot()[3], ("sampled_out", 1));
}

#[test]
fn redact_false_keeps_values_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.jsonl");
    let cfg = RecordConfig {
        path: path.clone(),
        sample: 1.0,
        redact: false,
        ..RecordConfig::default()
    };
    let rec = Recorder::open(&cfg, &RedactConfig::default(), 1 << 20).unwrap();
    let q = request(&[("authorization", "Bearer abc.def.ghi")], b"");
    rec.offer(SystemTime::now(), "proxy", &q, &response(&[], vec![]));
    rec.shutdown(Duration::from_secs(5));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("Bearer abc.def.ghi") && text.contains("token=s3cr3t"));
}

/// A writer that cannot keep up (a FIFO nobody reads yet) makes the recorder drop, and every
/// exchange offered is accounted for once it drains.
#[cfg(unix)]
#[test]
fn a_slow_writer_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("slow.jsonl");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: mkfifo unavailable");
        return;
    }
    // Opening a FIFO for writing waits for a reader: open it, read nothing until told.
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).unwrap();
            go_rx.recv().unwrap();
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut all).unwrap();
            all
        })
    };
    let cfg = RecordConfig {
        path: fifo.clone(),
        sample: 1.0,
        queue: 4,
        ..RecordConfig::default()
    };
    let rec = Recorder::open(&cfg, &RedactConfig::default(), 1 << 20).unwrap();
    let n = 2000;
    let q = request(&[], b"");
    let mut enqueued = 0;
    for _ in 0..n {
        enqueued += usize::from(rec.offer(
            SystemTime::now(),
            "proxy",
            &q,
            &response(&[], vec![b'y'; 1024]),
        ));
    }
    let c = rec.counters();
    let dropped = c.writer.dropped.load(Ordering::Relaxed) as usize;
    assert!(dropped > 0, "a blocked writer must make the queue drop");
    assert_eq!(enqueued + dropped, n);
    go_tx.send(()).unwrap();
    rec.shutdown(Duration::from_secs(10));
    let all = reader.join().unwrap();
    let written = c.writer.written.load(Ordering::Relaxed) as usize;
    assert_eq!(written, enqueued, "everything enqueued is written");
    assert_eq!(all.iter().filter(|b| **b == b'\n').count(), written);
}
