//! The worker pool: claims due jobs from a [`JobStore`] under a lease and runs them with
//! the handler of their kind, a bounded number at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chat_core::{Claimed, Job, JobId, JobStore, Outcome, async_trait, timestamp};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

/// How one attempt of a job ended, as its handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done: the work happened.
    Done,
    /// Done with nothing to do (a `message.undelivered` for a message delivered since).
    Skipped,
    /// Failed; try again at `at`.
    Retry {
        /// Why, for operators.
        error: String,
        /// When to try again.
        at: OffsetDateTime,
    },
    /// Failed for good: the job is dead, kept for an operator.
    Dead {
        /// Why, for operators.
        error: String,
    },
}

/// Runs the jobs of one kind.
///
/// # Contract
///
/// - **At least once.** A job may run again after a crash, a lost lease or a failed
///   attempt, so running it twice must be harmless (a webhook keeps its `webhook-id`).
/// - **Bounded.** One attempt ends well within the pool's lease (a per-attempt
///   timeout), or another worker may take the job over while it still runs.
/// - **No panics.** Every failure is a [`Verdict`].
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The kind of job it runs.
    fn kind(&self) -> &'static str;

    /// Runs one attempt of `job` (its `attempts` counting this one).
    async fn run(&self, job: &Job) -> Verdict;
}

/// The pool's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Jobs run at once.
    pub workers: usize,
    /// How long a claim lasts before another worker may take the job over: longer than
    /// any attempt takes.
    pub lease: Duration,
    /// How often the store is asked for due jobs while nothing wakes the pool.
    pub poll: Duration,
}

impl Default for PoolConfig {
    /// Eight workers, a 60 s lease, a poll each 500 ms.
    fn default() -> Self {
        Self {
            workers: 8,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(500),
        }
    }
}

/// What the pool has done, counted since it started.
#[derive(Debug, Default)]
pub struct PoolStats {
    succeeded: AtomicU64,
    skipped: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    released: AtomicU64,
}

impl PoolStats {
    /// Attempts that did their work.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Attempts that found nothing left to do.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Attempts that failed with another to come.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Jobs that failed their last attempt.
    pub fn dead(&self) -> u64 {
        self.dead.load(Ordering::Relaxed)
    }

    /// Jobs given back unfinished at shutdown.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }
}

/// Told of every job that succeeded, with how long after its due time it did (the
/// delivery latency: for `message.created`, from the message's commit).
pub type LatencyObserver = Arc<dyn Fn(&Job, Duration) + Send + Sync>;

/// Wakes a pool when jobs were just stored, so they run without waiting for the poll.
#[derive(Debug, Clone, Default)]
pub struct PoolWaker(Arc<Notify>);

impl PoolWaker {
    /// A waker for one pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the pool.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// A running pool of workers. Dropping it leaves them running; [`WorkerPool::shut_down`]
/// stops them.
pub struct WorkerPool {
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
    store: Arc<dyn JobStore>,
    in_flight: Arc<Mutex<InFlight>>,
    stats: Arc<PoolStats>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl WorkerPool {
    /// Starts claiming from `store` and running each job with the handler of its kind.
    /// A job whose kind has no handler is dead at once.
    pub fn start(
        store: Arc<dyn JobStore>,
        handlers: Vec<Arc<dyn JobHandler>>,
        config: PoolConfig,
        waker: PoolWaker,
        observer: Option<LatencyObserver>,
    ) -> Self {
        let stats = Arc::new(PoolStats::default());
        let in_flight = Arc::new(Mutex::new(InFlight::new()));
        let (stop, stopped) = watch::channel(false);
        let pool = Pool {
            store: Arc::clone(&store),
            handlers: handlers
                .into_iter()
                .map(|handler| (handler.kind(), handler))
                .collect(),
            config: PoolConfig {
                workers: config.workers.max(1),
                ..config
            },
            waker,
            observer,
            in_flight: Arc::clone(&in_flight),
            stats: Arc::clone(&stats),
        };
        let done = tokio::spawn(pool.run(stopped));
        Self {
            stop,
            done,
            store,
            in_flight,
            stats,
        }
    }

    /// What the pool has done so far.
    pub fn stats(&self) -> Arc<PoolStats> {
        Arc::clone(&self.stats)
    }

    /// Stops claiming, lets the jobs in flight finish for up to `grace`, and gives the
    /// rest back (pending again, due at once) for any node to run.
    pub async fn shut_down(self, grace: Duration) {
        let Self {
            stop,
            mut done,
            store,
            in_flight,
            stats,
        } = self;
        let _ = stop.send(true);
        if tokio::time::timeout(grace, &mut done).await.is_err() {
            // Aborting the pool drops its attempts.
            done.abort();
            let _ = done.await;
        }
        let unfinished: Vec<_> = lock(&in_flight).drain().collect();
        for (id, lease) in unfinished {
            let released = Outcome::Failed {
                error: "released unfinished at shutdown".to_owned(),
                retry_at: Some(timestamp::now()),
            };
            // Taken over, or the store is away: then the lease ends by itself.
            if let Ok(true) = store.finish(id, lease, released).await {
                stats.released.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Pool {
    store: Arc<dyn JobStore>,
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    config: PoolConfig,
    waker: PoolWaker,
    observer: Option<LatencyObserver>,
    in_flight: Arc<Mutex<InFlight>>,
    stats: Arc<PoolStats>,
}

/// The attempts running: each job's lease, to give it back at shutdown.
type InFlight = HashMap<JobId, u64>;

fn lock(in_flight: &Mutex<InFlight>) -> MutexGuard<'_, InFlight> {
    // Each critical section is one map operation: poisoning leaves it consistent.
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long the pool waits before asking a store that failed again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// An attempt that ended, waiting for its outcome to be recorded.
struct Finished {
    job: Job,
    lease: u64,
    verdict: Verdict,
}

/// Outcomes recorded in one store call at most.
const FINISH_BATCH: usize = 256;

impl Pool {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut running: JoinSet<()> = JoinSet::new();
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
        let mut finished = Vec::with_capacity(FINISH_BATCH);
        while !*stopped.borrow() {
            while running.try_join_next().is_some() {}
            let free = this.config.workers.saturating_sub(running.len());
            // Claim when half the workers are free (or all of them are idle): claims
            // are writes, so each takes several jobs where it can.
            let worth_claiming =
                free > 0 && (free * 2 >= this.config.workers || running.is_empty());
            let mut claimed_any = false;
            if worth_claiming {
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match this
                    .store
                    .claim(timestamp::now(), this.config.lease, limit)
                    .await
                {
                    Ok(claims) => {
                        claimed_any = !claims.is_empty();
                        for claim in claims {
                            lock(&this.in_flight).insert(claim.job.id, claim.lease);
                            let done = finished_tx.clone();
                            running.spawn(Arc::clone(&this).attempt(claim, done));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim jobs; trying again shortly");
                        tokio::select! {
                            () = tokio::time::sleep(STORE_BACKOFF) => {}
                            _ = stopped.changed() => {}
                        }
                        continue;
                    }
                }
            }
            if claimed_any && running.len() < this.config.workers {
                // More may be due: ask again at once.
                continue;
            }
            tokio::select! {
                received = finished_rx.recv_many(&mut finished, FINISH_BATCH) => {
                    if received > 0 {
                        this.record(&mut finished).await;
                    }
                }
                Some(_) = running.join_next() => {}
                () = this.waker.0.notified() => {}
                () = tokio::time::sleep(this.config.poll) => {}
                _ = stopped.changed() => {}
            }
        }
        // Stopping: the attempts in flight finish and their outcomes are recorded
        // (`shut_down` aborts this after its grace, which drops them).
        while running.join_next().await.is_some() {}
        drop(finished_tx);
        while finished_rx.recv_many(&mut finished, FINISH_BATCH).await > 0 {
            this.record(&mut finished).await;
        }
    }

    async fn attempt(self: Arc<Self>, claim: Claimed, done: mpsc::UnboundedSender<Finished>) {
        let Claimed { job, lease, .. } = claim;
        let verdict = match self.handlers.get(job.kind.as_str()) {
            Some(handler) => handler.run(&job).await,
            None => Verdict::Dead {
                error: format!("no handler for jobs of kind {:?}", job.kind),
            },
        };
        // The pool outlives its attempts.
        let _ = done.send(Finished {
            job,
            lease,
            verdict,
        });
    }

    /// Records the outcomes of ended attempts, in one store call.
    async fn record(&self, finished: &mut Vec<Finished>) {
        let batch: Vec<Finished> = std::mem::take(finished);
        let outcomes = batch
            .iter()
            .map(|one| {
                let outcome = match &one.verdict {
                    Verdict::Done | Verdict::Skipped => Outcome::Succeeded,
                    Verdict::Retry { error, at } => Outcome::Failed {
                        error: error.clone(),
                        retry_at: Some(*at),
                    },
                    Verdict::Dead { error } => Outcome::Failed {
                        error: error.clone(),
                        retry_at: None,
                    },
                };
                (one.job.id, one.lease, outcome)
            })
            .collect();
        let answers = match self.store.finish_many(outcomes).await {
            Ok(answers) => answers,
            Err(error) => {
                // The leases end and the jobs run again: at least once.
                tracing::warn!(%error, jobs = batch.len(), "cannot record jobs' outcomes; they will run again");
                vec![false; batch.len()]
            }
        };
        let now = timestamp::now();
        for (one, recorded) in batch.into_iter().zip(answers) {
            lock(&self.in_flight).remove(&one.job.id);
            if recorded {
                self.count(&one.job, one.verdict, now);
            } else {
                tracing::info!(job = %one.job.id, "job's outcome not recorded (taken over, or the store is away)");
            }
        }
    }

    fn count(&self, job: &Job, verdict: Verdict, now: OffsetDateTime) {
        match verdict {
            Verdict::Done => {
                self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                if let Some(observer) = &self.observer {
                    let late = now - job.due_at;
                    observer(job, late.try_into().unwrap_or(Duration::ZERO));
                }
            }
            Verdict::Skipped => {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Retry { error, .. } => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %job.id, attempts = job.attempts, %error, "job failed; it will be tried again");
            }
            Verdict::Dead { error } => {
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %job.id, attempts = job.attempts, %error, "job dead after its last attempt");
            }
        }
    }
}
