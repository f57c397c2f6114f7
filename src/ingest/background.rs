//! The shadow I/O thread: the shadow client's connects, writes and reads run on a runtime of
//! their own, on one thread at a lower priority than the threads that forward.
//!
//! Why: tokio has no task priorities. On the forwarding runtime, a shadow reading a candidate's
//! answer takes its turns like a client request does, and a candidate that streams fast takes
//! most of them: reading is `recv` copies, and on a local network the peer's transmit work too
//! (`perf` against an endless candidate: 53% of the proxy's CPU in syscalls, 12% in `memmove`,
//! 7% in `malloc`), while clients waited (p99 2.2 s at 2,000 rps, `benches/hostile.sh`). The
//! kernel's scheduler does have priorities: on a thread of its own at nice 10, shadow I/O gets
//! what forwarding leaves (about a tenth of a core when forwarding wants all of it), whatever a
//! candidate sends. The shadow task itself (waiting for the bodies, building the exchange) stays
//! on the forwarding runtime, where it costs what it did; only the socket work moves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Niceness of the shadow I/O thread: that of the comparison threads by default
/// (`compare.nice`), below forwarding.
pub const SHADOW_IO_NICE: i32 = 10;

/// The thread and its runtime; stopped when dropped (tasks still on it are dropped, and their
/// sockets closed).
#[derive(Debug)]
pub struct Background {
    handle: Handle,
    _stop: Option<oneshot::Sender<()>>,
}

impl Background {
    /// [`Background::start`], or when no thread can be started, the calling runtime (shadows
    /// then share forwarding's priority, as they did before this thread existed). Call it from
    /// within a runtime.
    pub fn lowered(nice: i32) -> Self {
        Self::start(nice).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot start the shadow I/O thread; shadows share the forwarding threads");
            Self {
                handle: Handle::current(),
                _stop: None,
            }
        })
    }

    /// Starts the thread at niceness `nice` (0: as the rest of the process).
    pub fn start(nice: i32) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("shadowdiff-shadow-io".into())
            .spawn(move || {
                crate::pipeline::pool::lower_priority(nice, "shadow I/O");
                // Runs until the sender is dropped; the runtime, and what is left on it, is
                // dropped here, outside any async context.
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: Some(stop),
        })
    }

    /// Runs `f` on the shadow I/O thread. Dropping the returned future aborts it there.
    pub fn spawn<F>(&self, f: F) -> Remote<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Remote(self.handle.spawn(f))
    }
}

/// A task on the shadow I/O thread; aborted when dropped (a shadow abandoned at shutdown must
/// not leave its socket work running). `None` if the task ended without an output (aborted, or
/// the thread stopped).
pub struct Remote<T>(JoinHandle<T>);

impl<T> Drop for Remote<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Remote<T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        Pin::new(&mut self.0).poll(cx).map(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn tasks_run_on_the_lowered_thread_and_are_aborted_when_dropped() {
        let bg = Background::start(SHADOW_IO_NICE).unwrap();
        let name = bg
            .spawn(async { std::thread::current().name().map(str::to_string) })
            .await;
        assert_eq!(name, Some(Some("shadowdiff-shadow-io".to_string())));
        #[cfg(target_os = "linux")]
        {
            let nice = bg
                .spawn(async {
                    rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(nice, SHADOW_IO_NICE);
        }
        // Dropped before it finishes: aborted there (its future dropped), never finished.
        struct Dropped(Option<oneshot::Sender<()>>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.take().map(|t| t.send(()));
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let (started_tx, started) = oneshot::channel();
        let (dropped_tx, dropped) = oneshot::channel();
        let task = bg.spawn(async move {
            let _guard = Dropped(Some(dropped_tx));
            let _ = started_tx.send(());
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            d.store(true, Ordering::SeqCst);
        });
        started.await.unwrap();
        drop(task);
        tokio::time::timeout(std::time::Duration::from_secs(10), dropped)
            .await
            .unwrap()
            .unwrap();
        assert!(!done.load(Ordering::SeqCst));
    }
}
