//! Helper for `benches/load.sh`: a JSON backend with an optional delay, and an open-loop load
//! generator (requests sent on a fixed schedule; latency measured from the scheduled time, so a
//! stalled proxy cannot hide its stalls — no coordinated omission).
//!
//! `loadtool backend PORT DELAY_MS VARIANT` · `loadtool open URL RATE SECONDS`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn body(variant: &str) -> Bytes {
    // ~1 KB of order JSON; the variant changes only a volatile field.
    let items: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{i:04}","qty":{},"price":{}.99,"name":"Item number {i}"}}"#,
                i + 1,
                10 + i
            )
        })
        .collect();
    Bytes::from(format!(
        r#"{{"id":12345,"status":"shipped","customer":{{"id":77,"name":"Ada Lovelace"}},"items":[{}],"total":123.45,"meta":{{"generated_at":"2026-11-23T10:00:00.{variant}Z"}}}}"#,
        items.join(",")
    ))
}

async fn backend(port: u16, delay: Duration, variant: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let body = body(&variant);
    loop {
        let (s, _) = listener.accept().await.unwrap();
        let _ = s.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req| {
                let body = body.clone();
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

async fn open_loop(url: String, rate: u64, secs: u64) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    let uri: hyper::Uri = url.parse().unwrap();
    let hist = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let total = rate * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, uri, hist, errors) =
            (client.clone(), uri.clone(), hist.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let ok = match client.get(uri).await {
                Ok(r) => r.into_body().collect().await.is_ok(),
                Err(_) => false,
            };
            if !ok {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let us = scheduled.elapsed().as_micros() as u64;
            hist.lock().unwrap().record(us.max(1)).unwrap();
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let h = hist.lock().unwrap();
    println!(
        "{{\"rate\":{rate},\"requests\":{},\"errors\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        h.len(),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.max()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("backend") => rt.block_on(backend(
            args[2].parse().unwrap(),
            Duration::from_millis(args[3].parse().unwrap()),
            args.get(4).cloned().unwrap_or_else(|| "000".into()),
        )),
        Some("open") => rt.block_on(open_loop(
            args[2].clone(),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        )),
        _ => eprintln!("usage: loadtool backend PORT DELAY_MS [VARIANT] | open URL RATE SECONDS"),
    }
}
