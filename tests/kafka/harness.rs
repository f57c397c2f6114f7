//! Real components for the Kafka tests: a `tansu` broker on a free 127.0.0.1 port (memory
//! storage) and the independent consumer `tests/kafka/consume.py` (confluent-kafka in
//! `target/pyenv`). Both are installed by `scripts/install-test-deps.sh`; without them the tests
//! skip with a message, unless `CI` is set, where a missing component is a failure
//! (`common::missing`; every test that includes this harness also declares `mod common`).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use crate::common::{installed, missing};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tansu binary, from PATH or ~/.cargo/bin.
pub fn tansu_bin() -> Option<PathBuf> {
    let cargo_bin: Vec<PathBuf> = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin"))
        .into_iter()
        .collect();
    installed("tansu", &cargo_bin, "tansu (Kafka-compatible broker)")
}

/// The Python with confluent-kafka, in `target/pyenv`.
pub fn python() -> Option<PathBuf> {
    let py = manifest_dir().join("target/pyenv/bin/python");
    let ok = py.is_file()
        && Command::new(&py)
            .args(["-c", "import confluent_kafka"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if ok {
        Some(py)
    } else {
        missing("target/pyenv with confluent-kafka")
    }
}

/// A tansu broker on 127.0.0.1, killed on drop.
pub struct Tansu {
    bin: PathBuf,
    pub port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Tansu {
    pub fn start(bin: &Path, port: u16, log_dir: &Path) -> Tansu {
        let mut t = Tansu {
            bin: bin.to_path_buf(),
            port,
            log: log_dir.join(format!("tansu-{port}.log")),
            child: None,
        };
        t.spawn();
        t
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    /// Ready when a metadata request through librdkafka names this broker.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", "shadowdiff-probe")
            .set("log_level", "0")
            .create()
            .unwrap();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tansu exited with {st} during start:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(md) = consumer.fetch_metadata(None, Duration::from_millis(500))
                && !md.brokers().is_empty()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tansu not ready on port {} after 30 s:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (memory storage: its topics are gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The port must be free again before the test carries on (restart on the same port).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "port {} still open", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates `topic` (idempotent), retrying while the broker settles.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        let res = rt.block_on(admin.create_topics([&t], &opts));
        match res {
            Ok(rs) => match &rs[0] {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return,
                Err((_, e)) => assert!(Instant::now() < deadline, "create topic {topic}: {e}"),
            },
            Err(e) => assert!(Instant::now() < deadline, "create topic {topic}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One message as the independent consumer saw it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Consumed {
    pub key: Option<String>,
    pub value: Option<String>,
    pub partition: i32,
    pub offset: i64,
}

/// Reads `topic` from the beginning with confluent-kafka until `expect_ids` distinct ids were
/// seen and the topic stayed quiet for a second.
pub fn consume(py: &Path, brokers: &str, topic: &str, expect_ids: usize) -> Vec<Consumed> {
    consume_with(
        py,
        brokers,
        topic,
        &["--expect-ids", &expect_ids.to_string()],
    )
}

/// Reads `topic` from the beginning until at least `min` messages were seen and the topic
/// stayed quiet for a second (for messages without an `id`: statistics).
pub fn consume_messages(py: &Path, brokers: &str, topic: &str, min: usize) -> Vec<Consumed> {
    consume_with(py, brokers, topic, &["--min-messages", &min.to_string()])
}

fn consume_with(py: &Path, brokers: &str, topic: &str, until: &[&str]) -> Vec<Consumed> {
    let out = Command::new(py)
        .arg(manifest_dir().join("tests/kafka/consume.py"))
        .args(["--brokers", brokers, "--topic", topic])
        .args(until)
        .args(["--timeout", "60"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "consume.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `f` until it returns true, or panics with `what` after `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
