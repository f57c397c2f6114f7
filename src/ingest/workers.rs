//! The comparison pool: OS threads fed by a bounded queue. Sources hand exchanges over with
//! [`Pool::try_submit`], which never blocks — a full queue is a counted drop, not back-pressure
//! on live traffic. Workers run the pure comparator, build the published event when there is
//! one, and call the sink.

use crate::compare::{Comparator, SkipReason, Verdict, VerdictKind};
use crate::event::{Event, Redaction};
use crate::exchange::Exchange;
use crate::sink::{Observation, Sink};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

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
    /// Stop one worker (sent after every other job, at shutdown).
    Stop,
}

/// What the workers need besides the job.
pub struct Context {
    pub comparator: Comparator,
    pub redaction: Redaction,
    pub instance: String,
    pub sink: Arc<dyn Sink>,
    pub noise: Arc<crate::compare::noise::NoiseModel>,
}

pub struct Pool {
    tx: SyncSender<Job>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `workers` threads behind a queue of `queue` jobs, at niceness `nice` (0: as the
    /// rest of the process).
    pub fn start(ctx: Context, workers: usize, queue: usize, nice: i32) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        let ctx = Arc::new(ctx);
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let (rx, ctx) = (rx.clone(), ctx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("shadowdiff-compare-{i}"))
                    .spawn(move || {
                        lower_priority(nice);
                        run(&rx, &ctx)
                    })?,
            );
        }
        Ok(Pool {
            tx,
            threads: Mutex::new(threads),
        })
    }

    /// Enqueues without blocking; gives the job back when the queue is full or closed.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
        })
    }

    /// Lets the workers finish every queued job, then joins them. Blocks: call it from a
    /// blocking context at shutdown.
    pub fn stop(&self) {
        let Ok(mut threads) = self.threads.lock() else {
            return;
        };
        for _ in threads.iter() {
            // Blocking send: the queue drains behind it; a closed queue means workers are gone.
            let _ = self.tx.send(Job::Stop);
        }
        for t in threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a comparison worker panicked");
            }
        }
    }
}

/// Comparison is best effort and forwarding is not: when the CPU is short, the scheduler should
/// give it to the I/O threads, and the comparison queue fills and sheds (counted) instead. Linux
/// keeps a nice value per thread, so this lowers only the calling comparison thread.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(nice, error = %e, "cannot lower the comparison threads' priority");
    }
}

fn run(rx: &Mutex<Receiver<Job>>, ctx: &Context) {
    loop {
        // The lock is held only while waiting for the next job, never while comparing.
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        match job {
            Ok(Job::Compare(ex, _held)) => {
                // A panic in the comparator must not take the worker (and the queue) down.
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(&ex, ctx)));
                if r.is_err() {
                    tracing::error!(id = %ex.id, endpoint = %ex.endpoint, "comparator panicked on an exchange");
                }
            }
            Ok(Job::Skip {
                ts,
                endpoint,
                reason,
                primary_latency,
            }) => {
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
            Ok(Job::Stop) | Err(_) => return,
        }
    }
}

fn process(ex: &Exchange, ctx: &Context) {
    // The comparator also does noise cancellation when a secondary answered.
    let mut v = ctx.comparator.compare(ex);
    // Learned noise: what the statistics over many exchanges say of each field (no-op without
    // a secondary answer).
    ctx.noise.apply(&ex.endpoint, &mut v);
    let event = matches!(
        v.kind,
        VerdictKind::Mismatch | VerdictKind::CandidateError | VerdictKind::Noise
    )
    .then(|| Arc::new(Event::build(ex, &v, &ctx.instance, &ctx.redaction)));
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
