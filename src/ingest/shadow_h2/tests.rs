#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::pipeline::budget::Budget;
use http::{HeaderValue, Method, Response};
use http_body_util::StreamBody;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// An HTTP/2-only server answering every request with `size` bytes in 1 KiB frames, then a
/// `grpc-status` trailer with the request's own `x-in` trailer echoed; counts connections.
async fn server(size: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| async move {
                let all = req.into_body().collect().await.unwrap();
                let echo = all
                    .trailers()
                    .and_then(|t| t.get("x-in").cloned())
                    .unwrap_or(HeaderValue::from_static("none"));
                let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..size / 1024)
                    .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; 1024]))))
                    .collect();
                let mut t = HeaderMap::new();
                t.insert("grpc-status", HeaderValue::from_static("0"));
                t.insert("x-echo", echo);
                frames.push(Ok(Frame::trailers(t)));
                let body = StreamBody::new(futures_util::stream::iter(frames));
                Ok::<_, Infallible>(Response::new(body))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc),
            );
        }
    });
    (addr, conns)
}

fn client(addr: SocketAddr) -> H2Client {
    H2Client::new(
        &addr.to_string(),
        Dialer::Tcp,
        Resolver::new(Duration::from_secs(60)),
    )
}

fn post(headers: &HeaderMap) -> ShadowRequest<'_> {
    ShadowRequest {
        method: &Method::POST,
        path_and_query: "/pkg.S/M",
        headers,
        body: b"hello",
    }
}

#[tokio::test]
async fn answers_come_with_their_trailers_and_share_one_connection() {
    let (addr, conns) = server(4096).await;
    let c = client(addr);
    let budget = Budget::new(1 << 20);
    let headers = HeaderMap::new();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-in", HeaderValue::from_static("t1"));
    for _ in 0..3 {
        let mut held = budget.reservation();
        let a = c
            .send(&post(&headers), Some(&trailers), 1 << 20, &mut held)
            .await
            .unwrap();
        assert_eq!((a.status, a.body.len()), (200, 4096));
        assert_eq!(a.headers.get("grpc-status").unwrap(), "0");
        assert_eq!(a.headers.get("x-echo").unwrap(), "t1");
        // The body is held in the budget until the answer is let go.
        assert_eq!(held.bytes(), 4096);
    }
    assert_eq!(budget.used(), 0);
    assert_eq!(conns.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_answer_over_the_cap_or_the_budget_stops_being_read() {
    let (addr, _) = server(64 * 1024).await;
    let c = client(addr);
    let headers = HeaderMap::new();
    let budget = Budget::new(1 << 20);
    let mut held = budget.reservation();
    let e = c.send(&post(&headers), None, 8192, &mut held).await;
    assert!(
        matches!(e, Err(ShadowError::TooLarge(8192))),
        "{:?}",
        e.map(|a| a.body.len())
    );
    drop(held);
    assert_eq!(budget.used(), 0);
    let small = Budget::new(16 * 1024);
    let mut held = small.reservation();
    let e = c.send(&post(&headers), None, 1 << 20, &mut held).await;
    assert!(
        matches!(e, Err(ShadowError::OverBudget(_))),
        "{:?}",
        e.map(|a| a.body.len())
    );
    drop(held);
    assert_eq!(small.used(), 0);
    // The connection survives a reset stream.
    let mut held = budget.reservation();
    let a = c
        .send(&post(&headers), None, 1 << 20, &mut held)
        .await
        .unwrap();
    assert_eq!(a.body.len(), 64 * 1024);
}

#[tokio::test]
async fn a_refused_connection_is_a_candidate_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = client(addr);
    let headers = HeaderMap::new();
    let mut held = Reservation::default();
    let e = c.send(&post(&headers), None, 1024, &mut held).await;
    assert!(
        matches!(e, Err(ShadowError::Upstream(UpstreamError::Refused(_)))),
        "{e:?}"
    );
}
