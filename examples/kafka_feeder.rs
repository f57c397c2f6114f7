//! Feeds synthetic events to the Kafka sink from its own process, for the kill -9 test in
//! `tests/kafka.rs` (and for trying the sink by hand).
//!
//! Prints the sink's counters as one JSON line each time they change. Without `--drain` it
//! runs until killed; with `--drain` it exits (status 0) once nothing is pending, after a clean
//! `shutdown`, printing a last line with `"final": true`.
//!
//! ```text
//! cargo run --example kafka_feeder -- --brokers 127.0.0.1:9092 --topic t --spool-dir /tmp/s --count 100
//! ```

use clap::Parser;
use shadowdiff::pipeline::Sink;
use shadowdiff::sink::kafka::{KafkaConfig, KafkaSink, testing::sample_event};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    spool_dir: PathBuf,
    /// Events to publish (0: only drain what an earlier run spooled).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Event ids are `{prefix}-{n}`.
    #[arg(long, default_value = "feeder")]
    id_prefix: String,
    /// Distinct endpoints (message keys) cycled through.
    #[arg(long, default_value_t = 3)]
    endpoints: u64,
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    #[arg(long, default_value_t = 10_000)]
    delivery_timeout_ms: u64,
    /// Exit once nothing is pending.
    #[arg(long)]
    drain: bool,
    /// Give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = KafkaConfig {
        brokers: args.brokers.clone(),
        topic: args.topic.clone(),
        spool_dir: args.spool_dir.clone(),
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        ..KafkaConfig::default()
    };
    let sink = match KafkaSink::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kafka_feeder: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    for n in 0..args.count {
        let ep = format!("GET /orders/{}", n % args.endpoints.max(1));
        let ev = Arc::new(sample_event(
            &format!("{}-{n}", args.id_prefix),
            &ep,
            args.body_bytes,
        ));
        sink.publish(&ev);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let mut last = None;
    let out = std::io::stdout();
    loop {
        let s = sink.stats();
        if last != Some(s) {
            let line = serde_json::to_string(&s).unwrap_or_default();
            let _ = writeln!(out.lock(), "{line}");
            last = Some(s);
        }
        if args.drain && s.pending() == 0 {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("kafka_feeder: timed out; counters {s:?}");
            return std::process::ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sink.shutdown(Duration::from_secs(5));
    let mut v = serde_json::to_value(sink.stats()).unwrap_or_default();
    v["final"] = serde_json::Value::Bool(true);
    let _ = writeln!(out.lock(), "{v}");
    std::process::ExitCode::SUCCESS
}
