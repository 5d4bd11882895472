use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Error;
use crate::ids::{JobId, MessageId, UserId};

/// A job to run later, as it is enqueued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// What the job does (`webhook`, say): the worker picks its handler by it.
    pub kind: String,
    /// The message it is about, if any (a job written with a new message gets that
    /// message's id).
    pub subject: Option<MessageId>,
    /// What the handler needs, as JSON.
    pub payload: String,
    /// The earliest time it may run.
    pub due_at: OffsetDateTime,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for its due time, or for a worker: never tried, or tried and failed with
    /// another attempt to come.
    Pending,
    /// Claimed by a worker and not finished; another worker may take it over once the
    /// lease ends.
    Running,
    /// Failed its last attempt; kept until an operator retries or discards it.
    Dead,
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Its id, stable for its whole life (a webhook's `webhook-id` comes from it).
    pub id: JobId,
    /// What it does.
    pub kind: String,
    /// The message it is about, if any.
    pub subject: Option<MessageId>,
    /// What its handler needs.
    pub payload: String,
    /// Where it stands.
    pub state: JobState,
    /// Attempts begun so far (claims).
    pub attempts: u32,
    /// When it may run next (for a pending job).
    pub due_at: OffsetDateTime,
    /// When it was enqueued.
    pub created_at: OffsetDateTime,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
}

/// A claimed job: the job and the lease under which it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The job, its `attempts` counting this one.
    pub job: Job,
    /// The claim: finishing the job needs it, so a worker whose lease ended and whose
    /// job another worker took over cannot finish it too.
    pub lease: u64,
    /// When the lease ends, and another worker may take the job over.
    pub lease_until: OffsetDateTime,
}

/// How a job's attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the job is removed.
    Succeeded,
    /// Failed with `error`; tried again at `retry_at`, or dead without one.
    Failed {
        /// Why, for operators.
        error: String,
        /// When to try again; `None` when that was the last attempt.
        retry_at: Option<OffsetDateTime>,
    },
}

/// The job outbox of a store: jobs written beside the changes that cause them, claimed
/// by the workers of every node that shares the store.
///
/// # Contract
///
/// - **Durable.** An enqueued job stays until it succeeds or an operator discards it,
///   across restarts for a durable store.
/// - **Due.** `claim` hands out only pending jobs whose `due_at` is at or before `now`,
///   oldest due first, and jobs whose lease ended before `now` (a worker that died):
///   each claim counts an attempt and leases the job until `now + lease`.
/// - **Disjoint.** Concurrent claims (from any node) never hand out the same job while
///   its lease runs.
/// - **Leased finish.** `finish` applies only with the lease of the job's current
///   claim; with an older lease (the job was taken over) it changes nothing and answers
///   `false`. Success removes the job; a failure with `retry_at` makes it pending again
///   at that time with its error kept; a failure without one makes it dead.
///   `finish_many` is `finish` for each of its entries, in order.
/// - **Operators.** `list` shows jobs in a state, oldest first; `retry` makes a dead job
///   pending and due at once; `discard` removes a job that is not running. Both answer
///   whether they found such a job.
/// - **Errors.** `Error::Unavailable` when the store cannot be reached.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Enqueues `jobs` (in one transaction: all or none); their ids, in order.
    async fn enqueue(&self, jobs: Vec<NewJob>, now: OffsetDateTime) -> Result<Vec<JobId>, Error>;

    /// Claims up to `limit` jobs due at `now`, each leased for `lease`.
    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>, Error>;

    /// Ends the attempt of `id` under `lease` with `outcome`; `false` when the lease is
    /// not the job's current one (or the job is gone).
    async fn finish(&self, id: JobId, lease: u64, outcome: Outcome) -> Result<bool, Error>;

    /// Ends several attempts at once: the same as [`finish`](Self::finish) for each, in
    /// order, with one answer each. A store may apply them in one round trip or
    /// transaction (a worker pool finishing many short jobs does this); by default they
    /// are applied one by one.
    async fn finish_many(&self, finished: Vec<(JobId, u64, Outcome)>) -> Result<Vec<bool>, Error> {
        let mut answers = Vec::with_capacity(finished.len());
        for (id, lease, outcome) in finished {
            answers.push(self.finish(id, lease, outcome).await?);
        }
        Ok(answers)
    }

    /// Up to `limit` jobs in `state`, oldest first.
    async fn list(&self, state: JobState, limit: u32) -> Result<Vec<Job>, Error>;

    /// Makes the dead job `id` pending, due at `now`.
    async fn retry(&self, id: JobId, now: OffsetDateTime) -> Result<bool, Error>;

    /// Removes job `id`, unless it is running.
    async fn discard(&self, id: JobId) -> Result<bool, Error>;
}

/// The jobs chat changes cause: which background work (webhooks, say) a new message or
/// a read brings with it. `ChatService` asks it and stores what it answers.
///
/// # Contract
///
/// - **Pure.** Both methods only describe jobs; they do no I/O and are cheap, since
///   `created` runs on every send.
/// - **Subject.** Jobs are stored in the transaction of the change that causes them,
///   with the message's id as their subject, so neither method sees an id: `created`
///   describes the jobs of one new message, `read` those of each message a read
///   changes (one read may change many; each gets a copy).
/// - **None is fine.** An empty answer stores nothing and costs nothing.
pub trait MessageJobs: Send + Sync + 'static {
    /// The jobs of a message sent by `sender` to `receiver` at `created_at`.
    fn created(&self, sender: UserId, receiver: UserId, created_at: OffsetDateTime) -> Vec<NewJob>;

    /// The jobs of each message `receiver` reads at `read_at`.
    fn read(&self, receiver: UserId, read_at: OffsetDateTime) -> Vec<NewJob>;

    /// Told after jobs it described were stored (to wake the workers that run them);
    /// by default nothing.
    fn stored(&self) {}
}
