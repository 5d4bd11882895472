//! A [`JobStore`] within one process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Error;
use crate::ids::{JobId, MessageId};
use crate::ports::{Claimed, Job, JobState, JobStore, NewJob, Outcome};

/// A [`JobStore`] in memory: for tests, examples and a single process that may lose
/// its jobs when it stops.
#[derive(Debug, Default)]
pub struct InMemoryJobStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    jobs: BTreeMap<JobId, Stored>,
    next_id: i64,
    next_lease: u64,
}

#[derive(Debug)]
struct Stored {
    job: Job,
    /// The current claim and when it ends.
    lease: Option<(u64, OffsetDateTime)>,
}

impl InMemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enqueues `jobs` at once; with `subject`, each names it instead of its own.
    pub(crate) fn enqueue_now(
        &self,
        jobs: Vec<NewJob>,
        subject: Option<MessageId>,
        now: OffsetDateTime,
    ) -> Vec<JobId> {
        let mut state = self.state();
        let mut ids = Vec::with_capacity(jobs.len());
        for new in jobs {
            state.next_id += 1;
            let id = JobId::new(state.next_id);
            state.jobs.insert(
                id,
                Stored {
                    job: Job {
                        id,
                        kind: new.kind,
                        subject: subject.or(new.subject),
                        payload: new.payload,
                        state: JobState::Pending,
                        attempts: 0,
                        due_at: new.due_at,
                        created_at: now,
                        last_error: None,
                    },
                    lease: None,
                },
            );
            ids.push(id);
        }
        ids
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the data consistent, so poisoning is harmless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `stored` may be claimed at `now`: pending and due, or running with its lease
/// over.
fn claimable(stored: &Stored, now: OffsetDateTime) -> bool {
    match stored.job.state {
        JobState::Pending => stored.job.due_at <= now,
        JobState::Running => stored.lease.is_none_or(|(_, until)| until <= now),
        JobState::Dead => false,
    }
}

#[async_trait]
impl JobStore for InMemoryJobStore {
    async fn enqueue(&self, jobs: Vec<NewJob>, now: OffsetDateTime) -> Result<Vec<JobId>, Error> {
        Ok(self.enqueue_now(jobs, None, now))
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>, Error> {
        let mut state = self.state();
        let mut due: Vec<(OffsetDateTime, JobId)> = state
            .jobs
            .values()
            .filter(|stored| claimable(stored, now))
            .map(|stored| (stored.job.due_at, stored.job.id))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let until = now + lease;
        let mut claimed = Vec::with_capacity(due.len());
        for (_, id) in due {
            state.next_lease += 1;
            let token = state.next_lease;
            if let Some(stored) = state.jobs.get_mut(&id) {
                stored.job.state = JobState::Running;
                stored.job.attempts += 1;
                stored.lease = Some((token, until));
                claimed.push(Claimed {
                    job: stored.job.clone(),
                    lease: token,
                    lease_until: until,
                });
            }
        }
        Ok(claimed)
    }

    async fn finish(&self, id: JobId, lease: u64, outcome: Outcome) -> Result<bool, Error> {
        let mut state = self.state();
        let Some(stored) = state.jobs.get_mut(&id) else {
            return Ok(false);
        };
        if stored.job.state != JobState::Running
            || stored.lease.map(|(token, _)| token) != Some(lease)
        {
            return Ok(false);
        }
        match outcome {
            Outcome::Succeeded => {
                state.jobs.remove(&id);
            }
            Outcome::Failed { error, retry_at } => {
                stored.lease = None;
                stored.job.last_error = Some(error);
                match retry_at {
                    Some(at) => {
                        stored.job.state = JobState::Pending;
                        stored.job.due_at = at;
                    }
                    None => stored.job.state = JobState::Dead,
                }
            }
        }
        Ok(true)
    }

    async fn list(&self, state: JobState, limit: u32) -> Result<Vec<Job>, Error> {
        let mut jobs: Vec<Job> = self
            .state()
            .jobs
            .values()
            .filter(|stored| stored.job.state == state)
            .map(|stored| stored.job.clone())
            .collect();
        jobs.sort_by_key(|job| (job.created_at, job.id));
        jobs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(jobs)
    }

    async fn retry(&self, id: JobId, now: OffsetDateTime) -> Result<bool, Error> {
        let mut state = self.state();
        match state.jobs.get_mut(&id) {
            Some(stored) if stored.job.state == JobState::Dead => {
                stored.job.state = JobState::Pending;
                stored.job.due_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn discard(&self, id: JobId) -> Result<bool, Error> {
        let mut state = self.state();
        match state.jobs.get(&id) {
            Some(stored) if stored.job.state != JobState::Running => {
                state.jobs.remove(&id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
