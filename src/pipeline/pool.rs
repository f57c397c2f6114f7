//! The comparison pool: OS threads fed by a bounded queue. Sources hand exchanges over with
//! [`Pool::try_submit`], which never blocks — a full queue is a counted drop, not back-pressure
//! on live traffic. Workers run the pure comparator, build the published event when there is
//! one, and call the sink.
//!
//! Wake-ups are batched for skips. Under saturation nearly every request is a skip (`overload`,
//! `shadow_queue_full`), and waking a worker for each one cost the proxy's core a futex call and
//! a context switch per request (~4,000 wake-ups/s at 40k requests/s, the worker preempting the
//! I/O thread each time). A skip only needs counting, not promptness: a worker woken by the
//! first one lingers up to [`LINGER`] for more, or until a batch is queued. Comparisons wake a
//! worker at once.

use super::{Observation, Sink, Stage};
use crate::compare::{SkipReason, Verdict, VerdictKind};
use crate::event::Event;
use crate::exchange::Exchange;
use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How long a worker woken for skips alone waits for more before observing them.
pub const LINGER: Duration = Duration::from_millis(5);
/// Skips queued that wake a lingering worker early (at most).
const MAX_BATCH: usize = 256;

/// One unit of work for the pool.
#[derive(Debug)]
pub enum Job {
    /// Compare, then observe; the reservation holds the exchange's bytes against the shadow
    /// memory budget until the worker is done with them.
    Compare(Box<Exchange>, super::budget::Reservation),
    /// Observe a skipped exchange, so sinks' counts add up.
    Skip {
        ts: SystemTime,
        endpoint: Arc<str>,
        reason: SkipReason,
        primary_latency: Option<Duration>,
    },
}

/// What the workers need besides the job.
pub struct Context {
    /// The comparator and redaction in force, loaded once per job (see [`super::Pipeline`]).
    pub stage: Arc<ArcSwap<Stage>>,
    pub instance: String,
    pub sink: Arc<dyn Sink>,
    /// Adjusts each verdict before it is observed (the learned noise model).
    pub refine: Option<Arc<dyn super::Refine>>,
    /// Sees each exchange before it is compared (the proxy's recorder).
    pub tap: Option<Arc<dyn super::Tap>>,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    cap: usize,
    /// Skips queued that wake a worker without waiting for [`LINGER`].
    batch: usize,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Comparisons among `jobs`: a worker does not linger while there is one.
    urgent: usize,
    /// Workers waiting on `ready`.
    waiting: usize,
    /// Stopping: nothing more is accepted; workers drain the queue and exit.
    closed: bool,
}

impl Pool {
    /// Starts `workers` threads behind a queue of `queue` jobs, at niceness `nice` (0: as the
    /// rest of the process).
    pub fn start(ctx: Context, workers: usize, queue: usize, nice: i32) -> std::io::Result<Pool> {
        let cap = queue.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            cap,
            batch: (cap / 4).clamp(1, MAX_BATCH),
        });
        let ctx = Arc::new(ctx);
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let (shared, ctx) = (shared.clone(), ctx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("shadowdiff-compare-{i}"))
                    .spawn(move || {
                        lower_priority(nice, "comparison");
                        run(&shared, &ctx)
                    })?,
            );
        }
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Enqueues without blocking; gives the job back when the queue is full or stopped.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        let sh = &self.shared;
        let mut q = sh.queue.lock();
        if q.closed || q.jobs.len() >= sh.cap {
            return Err(job);
        }
        let urgent = matches!(job, Job::Compare(..));
        q.urgent += usize::from(urgent);
        q.jobs.push_back(job);
        // The first job wakes a sleeping worker (which lingers if it is a skip); so do a
        // comparison and a full batch. Counted under the lock, so no wake-up is lost.
        let len = q.jobs.len();
        let wake = q.waiting > 0 && (urgent || len == 1 || len >= sh.batch);
        drop(q);
        if wake {
            sh.ready.notify_one();
        }
        Ok(())
    }

    /// Jobs queued now.
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().jobs.len()
    }

    /// Lets the workers finish every queued job, then joins them. Blocks: call it from a
    /// blocking context at shutdown.
    pub fn stop(&self) {
        self.shared.queue.lock().closed = true;
        self.shared.ready.notify_all();
        for t in self.threads.lock().drain(..) {
            if t.join().is_err() {
                tracing::error!("a comparison worker panicked");
            }
        }
    }
}

/// Comparison is best effort and forwarding is not: when the CPU is short, the scheduler should
/// give it to the I/O threads, and the comparison queue fills and sheds (counted) instead. Linux
/// keeps a nice value per thread, so this lowers only the calling thread (`what` names it in
/// the warning when it cannot). The shadow I/O thread uses it too (`ingest::background`).
pub(crate) fn lower_priority(nice: i32, what: &str) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(nice, error = %e, thread = what, "cannot lower a thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
}

/// The next job; `None` once the pool is stopped and drained. A worker sleeps only when the
/// queue is empty, and lingers once per wake-up, so it drains a busy queue without sleeping.
fn next_job(sh: &Shared) -> Option<Job> {
    let mut q = sh.queue.lock();
    if q.jobs.is_empty() {
        while q.jobs.is_empty() {
            if q.closed {
                return None;
            }
            q.waiting += 1;
            sh.ready.wait(&mut q);
            q.waiting -= 1;
        }
        // Woken for skips alone: give more of them a moment, so one wake-up serves a batch.
        if q.urgent == 0 && q.jobs.len() < sh.batch && !q.closed {
            q.waiting += 1;
            sh.ready.wait_for(&mut q, LINGER);
            q.waiting -= 1;
        }
    }
    let job = q.jobs.pop_front()?;
    if matches!(job, Job::Compare(..)) {
        q.urgent -= 1;
    }
    Some(job)
}

fn run(sh: &Shared, ctx: &Context) {
    // The lock is held only while waiting for and taking a job, never while comparing.
    while let Some(job) = next_job(sh) {
        handle(job, ctx);
    }
}

fn handle(job: Job, ctx: &Context) {
    match job {
        Job::Compare(ex, _held) => {
            // A panic in the comparator (or the tap) must not take the worker (and the queue)
            // down.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Some(t) = &ctx.tap {
                    t.exchange(&ex);
                }
                process(&ex, ctx)
            }));
            if r.is_err() {
                tracing::error!(id = %ex.id, endpoint = %ex.endpoint, "comparator panicked on an exchange");
            }
        }
        Job::Skip {
            ts,
            endpoint,
            reason,
            primary_latency,
        } => {
            let v = Verdict::skipped(reason);
            ctx.sink.observe(&Observation {
                ts,
                endpoint: &endpoint,
                verdict: &v,
                primary_latency,
                candidate_latency: None,
                secondary_latency: None,
                send_skew: None,
                event: None,
            });
        }
    }
}

fn process(ex: &Exchange, ctx: &Context) {
    // One stage for the whole exchange: a reload meanwhile applies from the next one.
    let stage = ctx.stage.load();
    // The comparator also does noise cancellation when a secondary answered.
    let mut v = stage.comparator.compare(ex);
    // Difference paths and fields as the event publishes them: the learned noise model and
    // every sink count by them, and what they count is published (summary, noise, Kafka).
    let mut raw = stage.redaction.name_differences(&mut v);
    // Learned noise: what the statistics over many exchanges say of each field (no-op without
    // a secondary answer).
    if let Some(r) = &ctx.refine {
        r.refine(&ex.endpoint, &mut v);
    }
    let event = matches!(
        v.kind,
        VerdictKind::Mismatch | VerdictKind::CandidateError | VerdictKind::Noise
    )
    .then(|| {
        raw.with_raw(&mut v, |v| {
            Arc::new(Event::build(ex, v, &ctx.instance, &stage.redaction))
        })
    });
    ctx.sink.observe(&Observation {
        ts: ex.ts,
        endpoint: &ex.endpoint,
        verdict: &v,
        primary_latency: Some(ex.primary.latency),
        candidate_latency: ex.candidate.as_ref().ok().map(|r| r.latency),
        secondary_latency: ex
            .secondary
            .as_ref()
            .and_then(|s| s.as_ref().ok())
            .map(|r| r.latency),
        send_skew: ex.sends.map(|s| s.skew()),
        event: event.as_ref(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::rules::RuleSet;
    use crate::compare::{Comparator, CompareOptions};
    use crate::redact::Redaction;
    use crate::stats::noise::{NoiseConfig, NoiseModel};
    use crossbeam_channel as mpsc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts observations; the first one blocks until `release` is sent (when `gate` is set).
    struct Counting {
        seen: AtomicUsize,
        gate: parking_lot::Mutex<Option<mpsc::Receiver<()>>>,
        entered: parking_lot::Mutex<Option<mpsc::Sender<()>>>,
    }

    impl Sink for Counting {
        fn observe(&self, _: &Observation<'_>) {
            if let Some(tx) = self.entered.lock().take() {
                let _ = tx.send(());
                if let Some(rx) = self.gate.lock().take() {
                    let _ = rx.recv();
                }
            }
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pool(queue: usize, sink: Arc<Counting>) -> Pool {
        let ctx = Context {
            stage: Arc::new(ArcSwap::from_pointee(Stage::new(
                Comparator::new(Arc::new(RuleSet::default()), CompareOptions::default()),
                Redaction::from_config(&Default::default(), 1024),
            ))),
            instance: "t".into(),
            sink,
            refine: Some(Arc::new(NoiseModel::new(
                NoiseConfig::default(),
                crate::stats::DEFAULT_MAX_ENDPOINTS,
            ))),
            tap: None,
        };
        Pool::start(ctx, 1, queue, 0).unwrap()
    }

    fn skip() -> Job {
        Job::Skip {
            ts: SystemTime::now(),
            endpoint: "GET /x".into(),
            reason: SkipReason::Overload,
            primary_latency: None,
        }
    }

    /// Lets the test hold the worker inside the sink: `entered` says it is there, `release`
    /// lets it go.
    struct Gate {
        release: mpsc::Sender<()>,
        entered: mpsc::Receiver<()>,
    }

    fn sink(gated: bool) -> (Arc<Counting>, Gate) {
        let (release, gate) = mpsc::unbounded();
        let (entered_tx, entered) = mpsc::unbounded();
        let s = Arc::new(Counting {
            seen: AtomicUsize::new(0),
            gate: parking_lot::Mutex::new(gated.then_some(gate)),
            entered: parking_lot::Mutex::new(gated.then_some(entered_tx)),
        });
        (s, Gate { release, entered })
    }

    #[test]
    fn a_lone_skip_is_observed_without_more_traffic() {
        let (s, _) = sink(false);
        let p = pool(64, s.clone());
        for n in 1..=3 {
            p.try_submit(skip()).unwrap();
            // Polled with a deadline: a lost wake-up would leave it queued for ever.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while s.seen.load(Ordering::SeqCst) < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "skip {n} never observed"
                );
                std::thread::yield_now();
            }
        }
        p.stop();
    }

    #[test]
    fn a_full_queue_refuses_and_stop_drains_everything_queued() {
        let (s, Gate { release, entered }) = sink(true);
        let p = pool(8, s.clone());
        // The worker takes the first job and blocks in the sink; eight more fill the queue.
        p.try_submit(skip()).unwrap();
        entered.recv().unwrap();
        for _ in 0..8 {
            p.try_submit(skip()).unwrap();
        }
        assert_eq!(p.queued(), 8);
        assert!(p.try_submit(skip()).is_err(), "a ninth does not fit");
        release.send(()).unwrap();
        p.stop();
        assert_eq!(s.seen.load(Ordering::SeqCst), 9);
        assert!(
            p.try_submit(skip()).is_err(),
            "nothing is accepted after stop"
        );
    }

    #[test]
    fn many_producers_lose_nothing() {
        let (s, _) = sink(false);
        let p = Arc::new(pool(1 << 16, s.clone()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        p.try_submit(skip()).unwrap();
                        if i % 997 == 0 {
                            std::thread::sleep(LINGER * 2); // let the worker go idle
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        p.stop();
        assert_eq!(s.seen.load(Ordering::SeqCst), 20_000);
    }
}
