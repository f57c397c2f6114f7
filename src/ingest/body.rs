//! A body wrapper that passes frames through untouched while keeping a bounded copy of the data,
//! for the shadow and the comparator. The copy is handed over through a oneshot when the body
//! ends (or is dropped), so nothing on the request path ever waits for whoever reads it.
//!
//! The copy is kept in a [`Collector`], whose allocations are reserved against the shadow memory
//! budget before they are made.

use super::buffer::Collector;
use crate::pipeline::budget::Reservation;
use bytes::Bytes;
use http::HeaderMap;
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

/// The copy of a complete body, or why there is none.
pub type Captured = Result<Kept, CaptureError>;

/// A complete body's copy: its bytes, when its last byte passed, the budget its bytes hold, and
/// its trailer section when it had one (gRPC's `grpc-status` travels there).
#[derive(Debug)]
pub struct Kept {
    pub body: Bytes,
    pub done: Instant,
    pub held: Reservation,
    pub trailers: Option<HeaderMap>,
}

/// Wraps a body; see the module docs. Without a sender it is a plain pass-through.
pub struct TeeBody<B: Body> {
    inner: B,
    copy: Copy,
    cap: usize,
    tx: Option<oneshot::Sender<Captured>>,
    /// The trailer section, copied as it passes (a few small fields, outside the budget).
    trailers: Option<HeaderMap>,
}

/// Where the copy stands.
enum Copy {
    /// No data yet: nothing allocated.
    Empty(Reservation),
    Kept(Collector),
    /// Given up (what was kept is freed, its reservation with it); the body still streams.
    Dropped(CaptureError),
}

impl<B: Body> TeeBody<B> {
    /// A tee keeping at most `cap` bytes, each allocation reserved in `held` first; the
    /// receiver gets the copy when the body ends.
    pub fn new(inner: B, cap: usize, held: Reservation) -> (Self, oneshot::Receiver<Captured>) {
        let (tx, rx) = oneshot::channel();
        let body = Self {
            inner,
            copy: Copy::Empty(held),
            cap,
            tx: Some(tx),
            trailers: None,
        };
        (body, rx)
    }

    /// No copy at all.
    pub fn passthrough(inner: B) -> Self {
        Self {
            inner,
            copy: Copy::Empty(Reservation::default()),
            cap: 0,
            tx: None,
            trailers: None,
        }
    }

    fn finish(&mut self, outcome: Result<(), String>) {
        let Some(tx) = self.tx.take() else { return };
        let copy = std::mem::replace(&mut self.copy, Copy::Empty(Reservation::default()));
        let trailers = self.trailers.take();
        let kept = |body, held| Kept {
            body,
            done: Instant::now(),
            held,
            trailers,
        };
        let msg = match (outcome, copy) {
            (Err(e), _) => Err(CaptureError::Aborted(e)),
            (Ok(()), Copy::Empty(held)) => Ok(kept(Bytes::new(), held)),
            (Ok(()), Copy::Kept(c)) => match c.freeze() {
                Some((bytes, held)) => Ok(kept(bytes, held)),
                None => Err(CaptureError::OverBudget),
            },
            (Ok(()), Copy::Dropped(e)) => Err(e),
        };
        // The reader may be gone (shadow abandoned): nothing to do then.
        let _ = tx.send(msg);
    }

    /// Copies `data`; `rest` is what the body says is still to come, when it knows.
    fn keep(&mut self, data: &[u8], rest: Option<u64>) {
        let kept = match &self.copy {
            Copy::Empty(_) => 0,
            Copy::Kept(c) => c.len(),
            Copy::Dropped(_) => return,
        };
        let have = (kept + data.len()) as u64;
        let total = rest.map_or(have, |r| have.saturating_add(r));
        if total > self.cap as u64 {
            // Over the cap, or declared to end over it: given up at once.
            self.copy = Copy::Dropped(CaptureError::TooLarge(self.cap));
            return;
        }
        if let Copy::Empty(held) = &mut self.copy {
            let held = std::mem::take(held);
            // A declared length is one block of exactly that size; otherwise segments.
            let c = match rest {
                Some(_) => Collector::exact(held, total as usize),
                None => Some(Collector::new(held)),
            };
            self.copy = c.map_or(Copy::Dropped(CaptureError::OverBudget), Copy::Kept);
        }
        if let Copy::Kept(c) = &mut self.copy
            && !c.extend(data)
        {
            self.copy = Copy::Dropped(CaptureError::OverBudget);
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
                        let rest = this.inner.size_hint().exact();
                        this.keep(d, rest);
                    }
                    // Trailers are always the last frame (a chunked request's trailer section):
                    // the body is complete, and hyper's client drops it right after writing
                    // them, before the inner body can say it ended.
                    if let Some(t) = f.trailers_ref() {
                        this.trailers = Some(t.clone());
                    }
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
        assert_eq!(rx.await.unwrap().unwrap().body, "hello");
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
        let Kept {
            body: copy, held, ..
        } = rx.await.unwrap().unwrap();
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
        assert_eq!(rx.await.unwrap().unwrap().body, "hello");
    }

    /// A body that declares its length (as `content-length` does) in frames of 10 bytes.
    struct Declared(Vec<Bytes>);

    impl Body for Declared {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready((!self.0.is_empty()).then(|| Ok(Frame::data(self.0.remove(0)))))
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
        }
    }

    #[tokio::test]
    async fn a_declared_length_is_one_exact_block_or_given_up_at_once() {
        let budget = crate::pipeline::budget::Budget::new(1 << 20);
        let frames = |n: usize| Declared((0..n).map(|i| Bytes::from(vec![i as u8; 10])).collect());
        let (tee, rx) = TeeBody::new(frames(30), 1000, budget.reservation());
        assert_eq!(tee.collect().await.unwrap().to_bytes().len(), 300);
        let Kept {
            body: copy, held, ..
        } = rx.await.unwrap().unwrap();
        // One block of exactly 300 bytes: no growth, no segments, nothing more reserved.
        assert_eq!((copy.len(), held.bytes(), budget.peak()), (300, 300, 300));
        drop(held);

        // Declared over the cap: nothing is copied, not even the first frame.
        let (tee, rx) = TeeBody::new(frames(30), 299, budget.reservation());
        assert_eq!(tee.collect().await.unwrap().to_bytes().len(), 300);
        assert_eq!(rx.await.unwrap().unwrap_err(), CaptureError::TooLarge(299));
        assert_eq!((budget.used(), budget.peak()), (0, 300));
    }

    fn futures_lite_stream<T>(v: Vec<T>) -> futures_util::stream::Iter<std::vec::IntoIter<T>> {
        futures_util::stream::iter(v)
    }
}
