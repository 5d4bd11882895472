//! Group commit: the sends this node stores at the same moment share one transaction,
//! so one `BEGIN`, one lock statement, one `COMMIT` and one flush of the write-ahead log
//! serve all of them, instead of each send paying for its own.
//!
//! A send that arrives while fewer than [`LANES`] transactions are being written starts
//! a task that takes every send waiting (up to [`MOST_IN_ONE`]), stores them in one
//! transaction and answers each once it has committed, then takes the next group,
//! until none waits.
//! Every contract of a single insert holds within the group:
//! - **Durable:** no send is answered before the commit.
//! - **Gap-free cursors:** the transaction takes the advisory locks of every participant
//!   of the group, in ascending user id like a single insert, so for any one user ids
//!   still commit in ascending order (all of a group's at once).
//! - **Idempotent:** a key used twice in one group stores once; the second is a replay
//!   of the first, as it would be in two transactions.
//! - **One send's fate is its own:** a block refuses only its own send. Should a
//!   statement fail for a reason of its own, nothing of the group is stored and each
//!   send is stored again alone; when the database cannot be reached, each is answered
//!   so. A commit whose answer was lost is decided send by send, as for one insert.

use std::sync::{Mutex, PoisonError};

use chat_core::{Inserted, Message, MessageId, NewMessageRecord};
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::insert::key_holder;
use crate::jobs::insert_jobs;
use crate::{PostgresStore, sql};

/// The most sends one transaction stores.
const MOST_IN_ONE: usize = 256;

/// Group transactions one node writes at once (they lock users in the same order, so
/// several would only ever wait for each other, never deadlock). One: on two cores, a
/// second lane made groups smaller and sends slower (7,300 against 9,100 sends/s spread
/// over 64 conversations, 2026-12-06).
const LANES: usize = 1;

/// The sends waiting for the next transaction of this node.
#[derive(Debug, Default)]
pub(crate) struct Group {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Tasks storing groups (each takes what waits when its group is done).
    writers: usize,
}

/// A send and where its answer goes.
#[derive(Debug)]
struct Waiting {
    record: NewMessageRecord,
    answer: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// How one send of a group came out, before the commit.
#[derive(Debug)]
enum Outcome {
    Created(MessageId),
    Replay(Message),
    Blocked,
}

/// Why a group was not stored as one.
enum Failure {
    /// Before the commit: nothing of the group is stored.
    Before(StoreError),
    /// The commit failed: with the answer lost, or refused (nothing stored).
    Commit(Vec<Outcome>, StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Self::Before(error.into())
    }
}

impl Group {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writing task's turn. Should it end other than by finding nothing waiting
/// (cancelled with its runtime, or a panic), what still waits is answered as
/// unavailable rather than left waiting, and the next send starts a new task.
struct Turn<'a> {
    group: &'a Group,
    finished: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut queue = self.group.queue();
            queue.writers -= 1;
            if queue.writers == 0 {
                queue.waiting.clear();
            }
        }
    }
}

impl PostgresStore {
    /// Stores `record` in the next group transaction of this node.
    pub(crate) async fn insert_in_group(
        &self,
        record: NewMessageRecord,
    ) -> Result<Inserted, StoreError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.group.queue();
            queue.waiting.push(Waiting { record, answer });
            let start = queue.writers < LANES;
            if start {
                queue.writers += 1;
            }
            start
        };
        if start {
            let store = self.clone();
            tokio::spawn(async move { store.write_groups().await });
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Lost(
                "the group transaction ended without an answer".to_owned(),
            ))
        })
    }

    /// Stores groups until none waits.
    async fn write_groups(&self) {
        let mut turn = Turn {
            group: &self.group,
            finished: false,
        };
        loop {
            let group: Vec<Waiting> = {
                let mut queue = turn.group.queue();
                if queue.waiting.is_empty() {
                    queue.writers -= 1;
                    turn.finished = true;
                    return;
                }
                let take = queue.waiting.len().min(MOST_IN_ONE);
                queue.waiting.drain(..take).collect()
            };
            self.write_group(group).await;
        }
    }

    /// Stores one group and answers each of its sends.
    async fn write_group(&self, mut group: Vec<Waiting>) {
        if group.len() == 1
            && let Some(alone) = group.pop()
        {
            let _ = alone.answer.send(self.insert_message(alone.record).await);
            return;
        }
        let records: Vec<&NewMessageRecord> = group.iter().map(|w| &w.record).collect();
        match self.store_group(&records).await {
            Ok(outcomes) => {
                for (waiting, outcome) in group.into_iter().zip(outcomes) {
                    let _ = waiting.answer.send(finish(waiting.record, outcome));
                }
            }
            Err(Failure::Commit(outcomes, lost)) if lost.is_unavailable() => {
                let reason = lost.to_string();
                for (waiting, outcome) in group.into_iter().zip(outcomes) {
                    let key =
                        sql::conversation_key(waiting.record.sender_id, waiting.record.receiver_id);
                    let answer = match finish(waiting.record, outcome) {
                        Ok(inserted) => {
                            self.resolve_lost_commit(
                                inserted,
                                key,
                                StoreError::Lost(reason.clone()),
                            )
                            .await
                        }
                        refused => refused,
                    };
                    let _ = waiting.answer.send(answer);
                }
            }
            Err(Failure::Before(error) | Failure::Commit(_, error)) if error.is_unavailable() => {
                let reason = error.to_string();
                for waiting in group {
                    let _ = waiting.answer.send(Err(StoreError::Lost(reason.clone())));
                }
            }
            Err(Failure::Before(error) | Failure::Commit(_, error)) => {
                tracing::debug!(%error, sends = group.len(), "a group failed; storing its sends one by one");
                for waiting in group {
                    let _ = waiting
                        .answer
                        .send(self.insert_message(waiting.record).await);
                }
            }
        }
    }

    /// One transaction for `records`: the locks of all their participants, then each
    /// insert (and its jobs) in order.
    async fn store_group(&self, records: &[&NewMessageRecord]) -> Result<Vec<Outcome>, Failure> {
        let mut users: Vec<i64> = records
            .iter()
            .flat_map(|r| [r.sender_id.get(), r.receiver_id.get()])
            .collect();
        users.sort_unstable();
        users.dedup();
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::LOCK_USERS)
            .bind(&users)
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(i64, bool)> = sqlx::query_as(sql::INSERT_GROUP)
            .bind(
                records
                    .iter()
                    .map(|r| r.sender_id.get())
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.receiver_id.get())
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.message.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.client_message_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(records.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
        if rows.len() != records.len() {
            return Err(Failure::Before(StoreError::Lost(format!(
                "a group of {} sends answered {} rows",
                records.len(),
                rows.len()
            ))));
        }
        let mut outcomes = Vec::with_capacity(records.len());
        for (record, (id, stored)) in records.iter().zip(rows) {
            let outcome = if stored {
                let id = MessageId::new(id);
                // In the same transaction as the message: both or neither.
                if !record.jobs.is_empty() {
                    insert_jobs(&mut *tx, &record.jobs, Some(id), record.created_at)
                        .await
                        .map_err(Failure::Before)?;
                }
                Outcome::Created(id)
            } else {
                // The key is taken (return its holder), or a block refused it.
                match key_holder(&mut tx, record).await.map_err(Failure::Before)? {
                    Some(holder) => Outcome::Replay(holder),
                    None => Outcome::Blocked,
                }
            };
            outcomes.push(outcome);
        }
        match tx.commit().await {
            Ok(()) => Ok(outcomes),
            Err(error) => Err(Failure::Commit(outcomes, error.into())),
        }
    }
}

/// The answer to a send of a committed group.
fn finish(record: NewMessageRecord, outcome: Outcome) -> Result<Inserted, StoreError> {
    match outcome {
        Outcome::Created(id) => Ok(Inserted {
            message: record.into_message(id),
            created: true,
        }),
        Outcome::Replay(message) => Ok(Inserted {
            message,
            created: false,
        }),
        Outcome::Blocked => Err(StoreError::Blocked),
    }
}
