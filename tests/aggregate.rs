//! The fleet view end to end: two real `shadowdiff proxy` processes publish to a real broker
//! (tansu), one `shadowdiff aggregate` process reads both topics, and its summary, gate,
//! mismatches and signatures must equal the sum of the two sidecars' own.
//!
//! Sidecar A publishes interval statistics every second; sidecar B's interval is an hour, so its
//! counts reach the aggregator only through the last interval flushed at shutdown (SIGTERM).
//! The aggregator starts after the traffic, so it also shows that state is rebuilt from the
//! topics. Copies of a statistics message and of an event are then published again
//! (at-least-once delivery) and must change nothing.
//!
//! Also here, because it needs the same real processes: a broker outage during traffic through
//! a real sidecar (`the_primary_path_is_unaffected_while_the_broker_is_down`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "kafka/harness.rs"]
mod harness;

mod common;

use bytes::Bytes;
use common::{Proc, free_port};
use harness::{Tansu, create_topic};
use http::Response;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::de::DeserializeOwned;
use shadowdiff::stats::{
    GateCounts, GateReport, GateRule, GateVerdict, SignatureSummary, Totals, judge, wilson95,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const EVENTS: &str = "fleet.events";
const STATS: &str = "fleet.stats";
const BODY: &str = r#"{"id":1,"price":10,"name":"x"}"#;

struct Sidecar {
    proc: Proc,
    listen: u16,
    admin: u16,
}

impl Sidecar {
    fn start(name: &str, dir: &Path, brokers: &str, up: (&str, &str), interval: &str) -> Sidecar {
        let (listen, admin) = (free_port(), free_port());
        let cfg = format!(
            "listen: 127.0.0.1:{listen}\n\
             primary: http://{}\n\
             candidate: http://{}\n\
             admin: 127.0.0.1:{admin}\n\
             instance: {name}\n\
             rules: rules.yaml\n\
             shutdown_grace: 8s\n\
             sinks:\n  kafka:\n    brokers: \"{brokers}\"\n    topic: {EVENTS}\n    \
             stats_topic: {STATS}\n    spool_dir: {}\n    stats_interval: {interval}\n",
            up.0,
            up.1,
            dir.join(format!("spool-{name}")).display()
        );
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, cfg).unwrap();
        let proc = Proc::spawn(
            name,
            dir,
            &["proxy", "--config", path.to_str().unwrap()],
            &[("RUST_LOG", "info")],
        );
        Sidecar {
            proc,
            listen,
            admin,
        }
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }
}

/// One GET (or POST) through a proxy; the client must get the primary's answer.
async fn request(port: u16, method: &str, path: &str) {
    let c = common::h1_client();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .body(common::full(""))
        .unwrap();
    let (parts, body) = common::send(&c, req).await;
    assert_eq!(parts.status, 200, "{method} {path}");
    assert_eq!(
        body, BODY,
        "{method} {path}: the client gets the primary's answer"
    );
}

/// GET `url`: `None` while nothing listens.
fn try_get(rt: &tokio::runtime::Runtime, url: &str) -> Option<(u16, Bytes)> {
    rt.block_on(async {
        let c = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let resp = tokio::time::timeout(Duration::from_secs(5), c.get(url.parse().unwrap()))
            .await
            .ok()?
            .ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    })
}

fn get_json<T: DeserializeOwned>(rt: &tokio::runtime::Runtime, url: &str) -> T {
    let (status, body) = try_get(rt, url).unwrap_or_else(|| panic!("no answer from {url}"));
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{url}: {e}: {}", String::from_utf8_lossy(&body)))
}

/// Polls `f` every 50 ms until true; on timeout fails with `what` and the processes' logs.
fn wait_for(secs: u64, what: &str, procs: &[&Proc], mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            let logs: Vec<String> = procs.iter().map(|p| p.logs()).collect();
            panic!(
                "timed out after {secs} s waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ready(rt: &tokio::runtime::Runtime, url: &str) -> bool {
    matches!(try_get(rt, url), Some((200, _)))
}

/// A summary as endpoint → figures, plus `(all)` for the totals. (Parsed by hand: serde's
/// `flatten`, used by `EndpointSummary`, cannot read serde_json's arbitrary-precision numbers.)
#[derive(Debug, Clone)]
struct Summary(BTreeMap<String, Totals>);

impl<'de> serde::Deserialize<'de> for Summary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let mut m = BTreeMap::new();
        let totals = serde_json::from_value(v["totals"].clone()).map_err(D::Error::custom)?;
        m.insert("(all)".to_string(), totals);
        for e in v["endpoints"].as_array().into_iter().flatten() {
            let mut e = e.clone();
            let name = e["endpoint"].as_str().unwrap_or_default().to_string();
            e.as_object_mut().map(|o| o.remove("endpoint"));
            m.insert(name, serde_json::from_value(e).map_err(D::Error::custom)?);
        }
        Ok(Summary(m))
    }
}

impl Summary {
    fn totals(&self) -> &Totals {
        &self.0["(all)"]
    }
}

fn by_endpoint(s: &Summary) -> BTreeMap<String, Totals> {
    s.0.clone()
}

/// What the aggregator must show for one endpoint (or the totals), given both sidecars' figures.
fn assert_sum(name: &str, agg: &Totals, parts: &[&Totals]) {
    let sum = |f: &dyn Fn(&Totals) -> u64| parts.iter().map(|t| f(t)).sum::<u64>();
    assert_eq!(agg.exchanges, sum(&|t| t.exchanges), "{name}: exchanges");
    let mut verdicts = BTreeMap::<String, u64>::new();
    let mut skips = BTreeMap::<String, u64>::new();
    let mut fields = BTreeMap::<(String, String), (u64, u64)>::new();
    for t in parts {
        for (k, n) in &t.verdicts {
            *verdicts.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &t.skip_reasons {
            *skips.entry(k.clone()).or_default() += n;
        }
        for f in &t.top_fields {
            let e = fields
                .entry((f.field.clone(), f.kind.as_str().into()))
                .or_default();
            e.0 += f.count;
            e.1 += f.noise;
        }
    }
    assert_eq!(agg.verdicts, verdicts, "{name}: verdicts");
    assert_eq!(agg.skip_reasons, skips, "{name}: skip reasons");
    let agg_fields: BTreeMap<(String, String), (u64, u64)> = agg
        .top_fields
        .iter()
        .map(|f| {
            (
                (f.field.clone(), f.kind.as_str().into()),
                (f.count, f.noise),
            )
        })
        .collect();
    assert_eq!(agg_fields, fields, "{name}: fields");
    let (k, n) = (
        sum(&|t| t.divergence.divergent),
        sum(&|t| t.divergence.samples),
    );
    assert_eq!(
        (agg.divergence.divergent, agg.divergence.samples),
        (k, n),
        "{name}: divergence counts"
    );
    assert_eq!(
        agg.divergence.rate,
        (n > 0).then(|| k as f64 / n as f64),
        "{name}"
    );
    let (lo, hi) = wilson95(k, n);
    assert_eq!(agg.divergence.ci95, [lo, hi], "{name}: Wilson interval");
    let l = &agg.latency;
    assert_eq!(
        l.primary.count,
        sum(&|t| t.latency.primary.count),
        "{name}: primary latency count"
    );
    assert_eq!(
        l.candidate.count,
        sum(&|t| t.latency.candidate.count),
        "{name}: candidate latency count"
    );
    assert_eq!(
        l.delta.count,
        sum(&|t| t.latency.delta.count),
        "{name}: delta latency count"
    );
    // Same histogram precision on both sides: the maximum is exact.
    let max = parts.iter().filter_map(|t| t.latency.primary.max_us).max();
    assert_eq!(l.primary.max_us, max, "{name}: primary max");
    let max = parts
        .iter()
        .filter_map(|t| t.latency.candidate.max_us)
        .max();
    assert_eq!(l.candidate.max_us, max, "{name}: candidate max");
}

fn signature_counts(s: &[SignatureSummary]) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for x in s {
        *m.entry((x.endpoint.clone(), x.signature.clone()))
            .or_default() += x.count;
    }
    m
}

fn mismatch_ids(v: &serde_json::Value) -> Vec<String> {
    v["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Reads the first message of `topic` and publishes an exact copy (what a producer retry or a
/// re-sent spool record looks like to a consumer).
fn republish_first(brokers: &str, topic: &str) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("copy-{}", rand::random::<u64>()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (key, payload) = loop {
        assert!(Instant::now() < deadline, "nothing to read in {topic}");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            break (
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            );
        }
    };
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    p.send(BaseRecord::to(topic).key(&key).payload(&payload))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

/// `shadowdiff_aggregate_messages_total{topic,outcome}` from the aggregator's `/metrics`.
fn aggregate_messages(rt: &tokio::runtime::Runtime, url: &str, topic: &str, outcome: &str) -> f64 {
    metric(
        rt,
        url,
        "shadowdiff_aggregate_messages_total",
        &[("topic", topic), ("outcome", outcome)],
    )
}

#[test]
fn two_sidecars_and_one_aggregator_the_fleet_view_is_the_sum() {
    let Some(tansu_bin) = harness::tansu_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&tansu_bin, free_port(), tmp.path());
    let brokers = tansu.brokers();
    create_topic(&brokers, EVENTS, 3);
    create_topic(&brokers, STATS, 3);
    fleet(&brokers, tmp.path());
    drop(tansu);
}

/// The same against librdkafka's mock cluster (in this process, reached over TCP by the child
/// processes): runs where tansu is not installed.
#[test]
fn the_fleet_view_is_the_sum_with_the_librdkafka_mock_cluster() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(EVENTS, 3, 1).unwrap();
    cluster.create_topic(STATS, 3, 1).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fleet(&cluster.bootstrap_servers(), tmp.path());
}

/// The rules file the sidecars load, a runtime for the test's own I/O, and one legacy service
/// and one candidate shared by every sidecar. The candidate differs when asked to (`m=1`): on
/// /alpha a value (price), on /beta a type (name).
fn services(dir: &Path) -> (tokio::runtime::Runtime, common::Backend, common::Backend) {
    std::fs::write(
        dir.join("rules.yaml"),
        "version: 1\nrules:\n  - match: \"*\"\n    ignore_headers: [date, server]\n",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (primary, candidate) = rt.block_on(async {
        let primary = common::json_backend(BODY).await;
        let candidate = common::backend(|r| async move {
            let body = match (r.uri.starts_with("/alpha"), r.uri.starts_with("/beta")) {
                _ if !r.uri.contains("m=1") => BODY,
                (true, _) => r#"{"id":1,"price":11,"name":"x"}"#,
                (_, true) => r#"{"id":1,"price":10,"name":5}"#,
                _ => BODY,
            };
            Response::builder()
                .header("content-type", "application/json")
                .body(common::full(body))
                .unwrap()
        })
        .await;
        (primary, candidate)
    });
    (rt, primary, candidate)
}

fn fleet(brokers: &str, dir: &Path) {
    let brokers = brokers.to_string();
    let (rt, primary, candidate) = services(dir);
    let (p, c) = (primary.addr.to_string(), candidate.addr.to_string());
    let mut a = Sidecar::start("sidecar-a", dir, &brokers, (&p, &c), "1s");
    let mut b = Sidecar::start("sidecar-b", dir, &brokers, (&p, &c), "1h");
    for s in [&a, &b] {
        wait_for(30, "sidecar readiness", &[&s.proc], || {
            ready(&rt, &s.admin_url("/readyz"))
        });
    }

    // A: 40 GETs on /alpha, 10 of them mismatching; 5 POSTs (never mirrored: skipped).
    // B: 20 GETs on /alpha (4 mismatching), 30 on /beta (5 mismatching), 10 on /gamma (matching).
    rt.block_on(async {
        for i in 0..40 {
            let m = u8::from(i % 4 == 0);
            request(a.listen, "GET", &format!("/alpha?n={i}&m={m}")).await;
        }
        for i in 0..5 {
            request(a.listen, "POST", &format!("/alpha?n={i}")).await;
        }
        for i in 0..20 {
            let m = u8::from(i % 5 == 0);
            request(b.listen, "GET", &format!("/alpha?n={i}&m={m}")).await;
        }
        for i in 0..30 {
            let m = u8::from(i % 6 == 0);
            request(b.listen, "GET", &format!("/beta?n={i}&m={m}")).await;
        }
        for i in 0..10 {
            request(b.listen, "GET", &format!("/gamma?n={i}")).await;
        }
    });
    for (s, n) in [(&a, 45), (&b, 60)] {
        wait_for(30, "the sidecar to count its traffic", &[&s.proc], || {
            get_json::<Summary>(&rt, &s.admin_url("/api/v1/summary?window=all"))
                .totals()
                .exchanges
                == n
        });
    }

    let windows = ["all", "15m"];
    let side = |s: &Sidecar| {
        let summaries: Vec<Summary> = windows
            .iter()
            .map(|w| get_json(&rt, &s.admin_url(&format!("/api/v1/summary?window={w}"))))
            .collect();
        let sigs: serde_json::Value = get_json(&rt, &s.admin_url("/api/v1/signatures"));
        let sigs: Vec<SignatureSummary> =
            serde_json::from_value(sigs["signatures"].clone()).unwrap();
        let ids = mismatch_ids(&get_json(
            &rt,
            &s.admin_url("/api/v1/mismatches?limit=1000"),
        ));
        (summaries, sigs, ids)
    };
    let (sum_a, sigs_a, ids_a) = side(&a);
    let (sum_b, sigs_b, ids_b) = side(&b);
    assert_eq!((ids_a.len(), ids_b.len()), (10, 9));
    assert_eq!(sum_a[0].totals().verdicts["mismatch"], 10);
    assert_eq!(sum_b[0].totals().verdicts["match"], 51);

    // B stops: its hour-long interval is cut short and published on the way out.
    b.proc.terminate();

    // The aggregator starts after the traffic: it reads both topics from the beginning.
    let admin = free_port();
    let agg_url = |path: &str| format!("http://127.0.0.1:{admin}{path}");
    let group = format!("fleet-{}", rand::random::<u32>());
    let mut agg = Proc::spawn(
        "aggregate",
        dir,
        &[
            "aggregate",
            "--brokers",
            &brokers,
            "--topic",
            EVENTS,
            "--stats-topic",
            STATS,
            "--group",
            &group,
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
        &[("RUST_LOG", "info")],
    );
    let started = Instant::now();
    wait_for(
        60,
        "aggregator readiness (partition assignment)",
        &[&agg],
        || ready(&rt, &agg_url("/readyz")),
    );
    let ready_after = started.elapsed();
    let all_ids: BTreeSet<String> = ids_a.iter().chain(&ids_b).cloned().collect();
    wait_for(
        60,
        "the aggregator to see 105 exchanges and 19 mismatch events",
        &[&agg, &a.proc, &b.proc],
        || {
            let s: Summary = get_json(&rt, &agg_url("/api/v1/summary?window=all"));
            let m = mismatch_ids(&get_json(&rt, &agg_url("/api/v1/mismatches?limit=1000")));
            s.totals().exchanges == 105 && m.len() == all_ids.len()
        },
    );
    eprintln!(
        "aggregator: ready {} ms after start, converged {} ms after start",
        ready_after.as_millis(),
        started.elapsed().as_millis()
    );

    let check = |label: &str| {
        for (i, w) in windows.iter().enumerate() {
            let agg_sum: Summary = get_json(&rt, &agg_url(&format!("/api/v1/summary?window={w}")));
            let (x, y, z) = (
                by_endpoint(&agg_sum),
                by_endpoint(&sum_a[i]),
                by_endpoint(&sum_b[i]),
            );
            let names: BTreeSet<&String> = y.keys().chain(z.keys()).collect();
            assert_eq!(
                x.keys().collect::<BTreeSet<_>>(),
                names,
                "{label} window={w}: endpoints"
            );
            for name in names {
                let parts: Vec<&Totals> =
                    [y.get(name), z.get(name)].into_iter().flatten().collect();
                assert_sum(&format!("{label} window={w} {name}"), &x[name], &parts);
            }
        }
        assert_eq!(
            by_endpoint(&get_json(&rt, &agg_url("/api/v1/summary?window=all")))["(all)"].exchanges,
            105
        );

        // The gate: what the summed counts imply, endpoint by endpoint and pooled.
        for (max, min) in [(0.05, 10u64), (0.5, 10), (0.05, 1000)] {
            let g: GateReport = get_json(
                &rt,
                &agg_url(&format!(
                    "/api/v1/gate?window=all&max_divergence={max}&min_samples={min}"
                )),
            );
            let (ya, yb) = (by_endpoint(&sum_a[0]), by_endpoint(&sum_b[0]));
            let counts = |name: &str| {
                [ya.get(name), yb.get(name)]
                    .into_iter()
                    .flatten()
                    .fold((0, 0), |(k, n), t| {
                        (k + t.divergence.divergent, n + t.divergence.samples)
                    })
            };
            let rule = GateRule {
                max_divergence: max,
                min_samples: min,
                ..GateRule::default()
            };
            let judged = |k, n| {
                judge(
                    GateCounts {
                        divergent: k,
                        samples: n,
                    },
                    &rule,
                )
            };
            let mut worst = GateVerdict::Pass;
            for e in &g.endpoints {
                let (k, n) = counts(&e.endpoint);
                assert_eq!((e.divergent, e.samples), (k, n), "{label} gate {e:?}");
                assert_eq!(e.verdict, judged(k, n).verdict, "{label} gate {e:?}");
                assert_eq!(e.ci95, judged(k, n).ci95, "{label} gate {e:?}");
                if n > 0 {
                    worst = worst.max(e.verdict);
                }
            }
            let (k, n) = counts("(all)");
            assert_eq!((g.divergent, g.samples), (k, n), "{label}");
            assert_eq!((k, n), (19, 100));
            assert_eq!(g.pool_verdict, judged(k, n).verdict, "{label}");
            assert_eq!(g.verdict, worst.max(g.pool_verdict), "{label}");
            assert_eq!(g.endpoints.len(), 4, "{label}: {g:?}");
        }

        // Every mismatch event exactly once; clusters add up.
        let agg_ids = mismatch_ids(&get_json(&rt, &agg_url("/api/v1/mismatches?limit=1000")));
        assert_eq!(agg_ids.len(), 19, "{label}");
        assert_eq!(
            agg_ids.iter().cloned().collect::<BTreeSet<_>>(),
            all_ids,
            "{label}: mismatch ids"
        );
        let sigs: serde_json::Value = get_json(&rt, &agg_url("/api/v1/signatures"));
        let sigs: Vec<SignatureSummary> =
            serde_json::from_value(sigs["signatures"].clone()).unwrap();
        let mut want = signature_counts(&sigs_a);
        for (k, n) in signature_counts(&sigs_b) {
            *want.entry(k).or_default() += n;
        }
        assert_eq!(signature_counts(&sigs), want, "{label}: signatures");
        assert_eq!(want.values().sum::<u64>(), 19);
        assert_eq!(
            want.len(),
            2,
            "one price cluster on /alpha (both sidecars), one on /beta"
        );
    };
    check("fresh");

    // The release gate command works against the aggregator as against a sidecar.
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["gate", "--url", &agg_url(""), "--window", "all"])
        .args(["--max-divergence", "0.05", "--min-samples", "10"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "19/100 divergent fails a 5% gate:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // At-least-once delivery: copies change nothing, and are counted as duplicates.
    republish_first(&brokers, STATS);
    republish_first(&brokers, EVENTS);
    let metrics = agg_url("/metrics");
    wait_for(30, "the aggregator to see both copies", &[&agg], || {
        aggregate_messages(&rt, &metrics, "stats", "duplicate") >= 1.0
            && aggregate_messages(&rt, &metrics, "events", "duplicate") >= 1.0
    });
    assert_eq!(aggregate_messages(&rt, &metrics, "stats", "invalid"), 0.0);
    assert_eq!(aggregate_messages(&rt, &metrics, "events", "invalid"), 0.0);
    assert_eq!(aggregate_messages(&rt, &metrics, "events", "applied"), 19.0);
    check("after duplicates");

    agg.terminate();
    a.proc.terminate();
}

/// Mistakes are reported before anything runs: no brokers, a bad librdkafka setting, a taken
/// admin port.
#[test]
fn aggregate_refuses_a_bad_command_line_at_once() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
            .arg("aggregate")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--brokers is required"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agg.yaml");
    std::fs::write(
        &cfg,
        "sinks:\n  kafka:\n    brokers: \"127.0.0.1:1\"\n    options: {no.such.setting: x}\n",
    )
    .unwrap();
    let (code, err) = run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no.such.setting"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["--brokers", "127.0.0.1:1", "--admin", &addr]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot bind the admin address"), "{err}");
}

/// A sample of the sidecar's `/metrics` by name and labels (`-1` when absent or unreachable).
fn metric(rt: &tokio::runtime::Runtime, url: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some((200, body)) = try_get(rt, url) else {
        return -1.0;
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => -1.0,
        })
        .unwrap_or(-1.0)
}

/// Issue 6: broker down during traffic, then back — through a real `shadowdiff proxy` process.
/// Every client request gets the primary's answer while the broker is gone (the request path
/// never waits on Kafka); the mismatch events of the outage wait in the spool and arrive, each
/// once after de-duplication by id, once the broker is back; the sidecar's own books balance:
/// events delivered + dropped = events detected.
#[test]
fn the_primary_path_is_unaffected_while_the_broker_is_down() {
    let (Some(tansu_bin), Some(py)) = (harness::tansu_bin(), harness::python()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut broker = Tansu::start(&tansu_bin, free_port(), dir);
    let brokers = broker.brokers();
    create_topic(&brokers, EVENTS, 3);
    create_topic(&brokers, STATS, 3);
    let (rt, primary, candidate) = services(dir);
    let (p, c) = (primary.addr.to_string(), candidate.addr.to_string());
    let sidecar = Sidecar::start("sidecar", dir, &brokers, (&p, &c), "1h");
    let metrics = sidecar.admin_url("/metrics");
    wait_for(30, "sidecar readiness", &[&sidecar.proc], || {
        ready(&rt, &sidecar.admin_url("/readyz"))
    });
    let kafka = |outcome: &str| {
        metric(
            &rt,
            &metrics,
            "shadowdiff_sink_events_total",
            &[("sink", "kafka"), ("outcome", outcome)],
        )
    };

    // Before: 20 requests, 5 mismatching, delivered.
    rt.block_on(async {
        for i in 0..20 {
            let m = u8::from(i % 4 == 0);
            request(sidecar.listen, "GET", &format!("/alpha?n={i}&m={m}")).await;
        }
    });
    wait_for(30, "5 deliveries", &[&sidecar.proc], || {
        kafka("delivered") == 5.0
    });

    // Outage: 100 requests, 25 mismatching. Each one must still get the primary's answer.
    broker.stop();
    rt.block_on(async {
        for i in 20..120 {
            let m = u8::from(i % 4 == 0);
            request(sidecar.listen, "GET", &format!("/alpha?n={i}&m={m}")).await;
        }
    });
    wait_for(
        60,
        "the outage's 25 events in the spool",
        &[&sidecar.proc],
        || metric(&rt, &metrics, "shadowdiff_spool_events", &[]) == 25.0,
    );
    assert_eq!(kafka("delivered"), 5.0);

    // Back (memory storage: the topics are created again); the spool drains.
    broker.restart();
    create_topic(&brokers, EVENTS, 3);
    create_topic(&brokers, STATS, 3);
    wait_for(60, "the spool to drain", &[&sidecar.proc], || {
        kafka("delivered") == 30.0 && metric(&rt, &metrics, "shadowdiff_spool_events", &[]) == 0.0
    });
    // The books: 30 events detected (the sidecar's own mismatch count), 30 delivered, 0 dropped.
    let summary: Summary = get_json(&rt, &sidecar.admin_url("/api/v1/summary?window=all"));
    assert_eq!(summary.totals().verdicts["mismatch"], 30);
    assert_eq!(summary.totals().exchanges, 120);
    assert_eq!(kafka("dropped"), 0.0);

    // What an independent consumer reads: the restarted broker holds what was sent after it came
    // back, i.e. exactly the outage's 25 events, each once after de-duplication by id.
    let all: serde_json::Value = get_json(&rt, &sidecar.admin_url("/api/v1/mismatches?limit=1000"));
    let outage_ids: BTreeSet<String> = all["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let q = e["request"]["query"].as_str().unwrap_or_default();
            let n: u32 = q
                .split('&')
                .find_map(|kv| kv.strip_prefix("n="))
                .unwrap()
                .parse()
                .unwrap();
            n >= 20
        })
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outage_ids.len(), 25);
    let msgs = harness::consume(&py, &brokers, EVENTS, 25);
    let got: BTreeSet<String> = msgs
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_str(m.value.as_deref().unwrap()).unwrap();
            assert_eq!(
                m.key.as_deref(),
                v["endpoint"].as_str(),
                "keyed by endpoint"
            );
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(got, outage_ids);
    drop(sidecar);
}
