//! A body wrapper that passes frames through untouched while keeping a bounded copy of the data,
//! for the shadow and the comparator. The copy is handed over through a oneshot when the body
//! ends (or is dropped), so nothing on the request path ever waits for whoever reads it.

use crate::pipeline::budget::Reservation;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tokio::sync::oneshot;

/// Why no copy is available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The body was larger than the cap; it passed through untouched, uncopied.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// Keeping the copy would have crossed the shadow memory budget; the body still passed.
    #[error("shadow memory budget exhausted")]
    OverBudget,
    /// The body failed or was dropped before its end (client or upstream went away).
    #[error("body did not complete: {0}")]
    Aborted(String),
}

/// The copy of a complete body, when its last byte passed, and the budget its bytes hold.
pub type Captured = Result<(Bytes, Instant, Reservation), CaptureError>;

/// Wraps a body; see the module docs. Without a sender it is a plain pass-through.
pub struct TeeBody<B: Body> {
    inner: B,
    buf: Option<BytesMut>,
    cap: usize,
    tx: Option<oneshot::Sender<Captured>>,
    held: Reservation,
    over_budget: bool,
}

impl<B: Body> TeeBody<B> {
    /// A tee keeping at most `cap` bytes, each reserved in `held` first; the receiver gets the
    /// copy when the body ends.
    pub fn new(inner: B, cap: usize, held: Reservation) -> (Self, oneshot::Receiver<Captured>) {
        let (tx, rx) = oneshot::channel();
        let body = Self {
            inner,
            buf: Some(BytesMut::new()),
            cap,
            tx: Some(tx),
            held,
            over_budget: false,
        };
        (body, rx)
    }

    /// No copy at all.
    pub fn passthrough(inner: B) -> Self {
        Self {
            inner,
            buf: None,
            cap: 0,
            tx: None,
            held: Reservation::default(),
            over_budget: false,
        }
    }

    fn finish(&mut self, outcome: Result<(), String>) {
        let Some(tx) = self.tx.take() else { return };
        let msg = match (outcome, self.buf.take()) {
            (Err(e), _) => Err(CaptureError::Aborted(e)),
            (Ok(()), Some(b)) => Ok((b.freeze(), Instant::now(), std::mem::take(&mut self.held))),
            (Ok(()), None) if self.over_budget => Err(CaptureError::OverBudget),
            (Ok(()), None) => Err(CaptureError::TooLarge(self.cap)),
        };
        // The reader may be gone (shadow abandoned): nothing to do then.
        let _ = tx.send(msg);
    }

    fn keep(&mut self, data: &[u8]) {
        if let Some(buf) = &mut self.buf {
            if buf.len() + data.len() > self.cap {
                // Over the cap: stop copying and free what was kept; the body still streams.
                self.buf = None;
                self.held = Reservation::default();
            } else if !self.held.grow(data.len()) {
                // Over the memory budget: the same, and the bytes reserved so far come back.
                self.buf = None;
                self.held = Reservation::default();
                self.over_budget = true;
            } else {
                buf.extend_from_slice(data);
            }
        }
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if this.tx.is_some() {
                    if let Some(d) = f.data_ref() {
                        this.keep(d);
                    }
                    // Trailers are always the last frame (a chunked request's trailer section):
                    // the body is complete, and hyper's client drops it right after writing
                    // them, before the inner body can say it ended.
                    if f.is_trailers() || this.inner.is_end_stream() {
                        this.finish(Ok(()));
                    }
                }
            }
            Some(Err(e)) => this.finish(Err(e.to_string())),
            None => this.finish(Ok(())),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for TeeBody<B> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // hyper may stop polling once `is_end_stream` says so, and drops the body: a body
            // that is at its end is complete; anything else was cut short.
            let done = self.inner.is_end_stream();
            self.finish(if done {
                Ok(())
            } else {
                Err("dropped before the end".into())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn copies_what_passes_through() {
        let (tee, rx) = TeeBody::new(
            Full::new(Bytes::from_static(b"hello")),
            16,
            Reservation::default(),
        );
        let out = tee.collect().await.unwrap().to_bytes();
        assert_eq!(out, "hello");
        assert_eq!(rx.await.unwrap().unwrap().0, "hello");
    }

    #[tokio::test]
    async fn over_the_cap_passes_through_uncopied() {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..4)
            .map(|i| Ok(Frame::data(Bytes::from(vec![i as u8; 10]))))
            .collect();
        let body = StreamBody::new(futures_lite_stream(chunks));
        let (tee, rx) = TeeBody::new(body, 25, Reservation::default());
        let out = tee.collect().await.unwrap().to_bytes();
        assert_eq!(out.len(), 40);
        assert_eq!(rx.await.unwrap().unwrap_err(), CaptureError::TooLarge(25));
    }

    #[tokio::test]
    async fn dropped_early_is_aborted() {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ];
        let mut tee_rx = TeeBody::new(
            StreamBody::new(futures_lite_stream(chunks)),
            25,
            Reservation::default(),
        );
        let _ = tee_rx.0.frame().await;
        drop(tee_rx.0);
        assert!(matches!(
            tee_rx.1.await.unwrap(),
            Err(CaptureError::Aborted(_))
        ));
    }

    #[tokio::test]
    async fn over_the_budget_passes_through_uncopied_and_gives_the_bytes_back() {
        let budget = crate::pipeline::budget::Budget::new(15);
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..3)
            .map(|i| Ok(Frame::data(Bytes::from(vec![i as u8; 10]))))
            .collect();
        let body = StreamBody::new(futures_lite_stream(chunks));
        let (tee, rx) = TeeBody::new(body, 1000, budget.reservation());
        let out = tee.collect().await.unwrap().to_bytes();
        assert_eq!(out.len(), 30, "the live body is untouched");
        assert_eq!(rx.await.unwrap().unwrap_err(), CaptureError::OverBudget);
        assert_eq!(budget.used(), 0);

        // Within the budget, the copy holds its bytes until the reservation is dropped.
        let (tee, rx) = TeeBody::new(
            Full::new(Bytes::from_static(b"0123456789")),
            1000,
            budget.reservation(),
        );
        let _ = tee.collect().await.unwrap();
        let (copy, _, held) = rx.await.unwrap().unwrap();
        assert_eq!((copy.len(), budget.used()), (10, 10));
        drop(held);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn trailers_end_the_copy_even_if_the_body_is_dropped_right_after() {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(http::HeaderMap::new())),
        ];
        let (mut tee, rx) = TeeBody::new(
            StreamBody::new(futures_lite_stream(frames)),
            25,
            Reservation::default(),
        );
        while let Some(f) = tee.frame().await {
            if f.unwrap().is_trailers() {
                break; // as hyper's client does: nothing follows trailers
            }
        }
        drop(tee);
        assert_eq!(rx.await.unwrap().unwrap().0, "hello");
    }

    fn futures_lite_stream<T>(v: Vec<T>) -> futures_util::stream::Iter<std::vec::IntoIter<T>> {
        futures_util::stream::iter(v)
    }
}
