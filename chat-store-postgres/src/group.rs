//! Group commit: the sends this node stores at the same moment share one transaction,
//! so one `BEGIN`, one lock statement, one `COMMIT` and one flush of the write-ahead log
//! serve all of them, instead of each send paying for its own.
//!
//! Every send goes to this node's writer: a thread of its own, with its own runtime
//! and its own connection, which takes every send waiting (up to [`MOST_IN_ONE`]),
//! stores them in one transaction and answers each once it has committed, then takes
//! the next group. Its own thread, because the group's four round trips are the
//! pace of every send: on the request runtime each of its wake-ups queued behind the
//! request tasks (a millisecond each under load), on its own thread it runs as soon
//! as Postgres answers.
//!
//! Every contract of a single insert holds within the group:
//! - **Durable:** no send is answered before the commit.
//! - **Gap-free cursors:** the transaction takes the advisory locks of every participant
//!   of the group, in ascending user id, so for any one user ids still commit in
//!   ascending order (all of a group's at once).
//! - **Idempotent:** a key used twice in one group stores once; the second is a replay
//!   of the first, as it would be in two transactions.
//! - **One send's fate is its own:** a block refuses only its own send. Should a
//!   statement fail for a reason of its own, nothing of the group is stored and each
//!   send is stored again alone; when the database cannot be reached, each is answered
//!   so. A commit whose answer was lost is decided send by send.

use std::sync::{Mutex, PoisonError};

use chat_core::{Inserted, Message, MessageId, NewMessageRecord};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::insert::{key_holder, stored};
use crate::jobs::insert_jobs;
use crate::{ACQUIRE_TIMEOUT, PostgresStore, RESOLUTION_ATTEMPTS, sql};

/// The most sends one transaction stores.
const MOST_IN_ONE: usize = 256;

/// This node's writer, started at the first send.
#[derive(Debug, Default)]
pub(crate) struct Group {
    lane: Mutex<Option<mpsc::UnboundedSender<Waiting>>>,
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

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Before(error)
    }
}

/// What the writer needs to open its connection like the pool's.
#[derive(Debug)]
struct Setup {
    options: PgConnectOptions,
    search_path: String,
}

impl PostgresStore {
    /// Stores `record` in the next group transaction of this node.
    pub(crate) async fn insert_in_group(
        &self,
        record: NewMessageRecord,
    ) -> Result<Inserted, StoreError> {
        let (answer, answered) = oneshot::channel();
        let mut waiting = Waiting { record, answer };
        // A writer that ended (its thread could not start, or panicked) is replaced.
        for _ in 0..2 {
            let lane = self
                .group
                .lane
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let lane = match lane {
                Some(lane) => lane,
                None => self.start_writer().await?,
            };
            match lane.send(waiting) {
                Ok(()) => {
                    return answered.await.unwrap_or_else(|_| {
                        Err(StoreError::Lost(
                            "the group transaction ended without an answer".to_owned(),
                        ))
                    });
                }
                Err(mpsc::error::SendError(back)) => {
                    waiting = back;
                    let mut slot = self
                        .group
                        .lane
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if slot
                        .as_ref()
                        .is_some_and(|current| current.same_channel(&lane))
                    {
                        *slot = None;
                    }
                }
            }
        }
        Err(StoreError::Lost(
            "the group writer could not start".to_owned(),
        ))
    }

    /// Starts this node's writer unless another send just did; answers its lane.
    async fn start_writer(&self) -> Result<mpsc::UnboundedSender<Waiting>, StoreError> {
        // The pool's schema: the one given, or what the pool's connections were set to.
        let search_path = match &self.schema {
            Some(schema) => schema.clone(),
            None => {
                sqlx::query_scalar("SELECT current_setting('search_path')")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        let setup = Setup {
            options: (*self.pool.connect_options()).clone(),
            search_path,
        };
        let mut slot = self
            .group
            .lane
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = slot.as_ref().filter(|lane| !lane.is_closed()) {
            return Ok(lane.clone());
        }
        let (lane, sends) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("chat-pg-writer".to_owned())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(Writer::new(setup).run(sends)),
                    Err(error) => {
                        tracing::error!(%error, "the group writer's runtime did not start")
                    }
                }
            })
            .map_err(|error| {
                StoreError::Lost(format!("the group writer did not start: {error}"))
            })?;
        *slot = Some(lane.clone());
        Ok(lane)
    }
}

/// The writer's state: its connection, opened when first needed and again after it
/// broke. It ends when every store handle sharing it is gone.
struct Writer {
    setup: Setup,
    connection: Option<PgConnection>,
}

impl Writer {
    fn new(setup: Setup) -> Self {
        Self {
            setup,
            connection: None,
        }
    }

    async fn run(mut self, mut sends: mpsc::UnboundedReceiver<Waiting>) {
        while let Some(first) = sends.recv().await {
            let mut group = vec![first];
            while group.len() < MOST_IN_ONE {
                match sends.try_recv() {
                    Ok(waiting) => group.push(waiting),
                    Err(_) => break,
                }
            }
            self.write_group(group).await;
        }
    }

    /// A new connection, set up like the pool's, within the pool's acquire timeout.
    async fn connect(&self) -> Result<PgConnection, StoreError> {
        let opening = async {
            let mut connection = PgConnection::connect_with(&self.setup.options).await?;
            sqlx::query("SELECT set_config('search_path', $1, false)")
                .bind(&self.setup.search_path)
                .execute(&mut connection)
                .await?;
            Ok::<_, StoreError>(connection)
        };
        tokio::time::timeout(ACQUIRE_TIMEOUT, opening)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Lost(
                    "no connection to the database within the timeout".to_owned(),
                ))
            })
    }

    /// Stores `records` on the writer's connection. A connection that broke while it
    /// sat idle fails before anything is stored; the group then gets one more try on
    /// a new connection.
    async fn store(&mut self, records: &[&NewMessageRecord]) -> Result<Vec<Outcome>, Failure> {
        let reused = self.connection.is_some();
        match self.store_once(records).await {
            Err(Failure::Before(error)) if reused && error.is_unavailable() => {
                self.store_once(records).await
            }
            other => other,
        }
    }

    /// Stores `records` once, on the writer's connection or a new one; a connection
    /// found broken is dropped.
    async fn store_once(&mut self, records: &[&NewMessageRecord]) -> Result<Vec<Outcome>, Failure> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let connection = self.connection.insert(connection);
        let result = store_group(connection, records).await;
        if matches!(&result, Err(Failure::Before(e) | Failure::Commit(_, e)) if e.is_unavailable())
        {
            self.connection = None;
        }
        result
    }

    /// Stores one group and answers each of its sends.
    async fn write_group(&mut self, group: Vec<Waiting>) {
        let records: Vec<&NewMessageRecord> = group.iter().map(|w| &w.record).collect();
        match self.store(&records).await {
            Ok(outcomes) => {
                for (waiting, outcome) in group.into_iter().zip(outcomes) {
                    let _ = waiting.answer.send(finish(waiting.record, outcome));
                }
            }
            Err(Failure::Commit(outcomes, lost)) if lost.is_unavailable() => {
                let reason = lost.to_string();
                for (waiting, outcome) in group.into_iter().zip(outcomes) {
                    let outcome = match outcome {
                        Outcome::Created(id) => {
                            let key = sql::conversation_key(
                                waiting.record.sender_id,
                                waiting.record.receiver_id,
                            );
                            self.resolve_lost_commit(id, key, StoreError::Lost(reason.clone()))
                                .await
                                .map(|()| Outcome::Created(id))
                        }
                        // Replays and refusals wrote nothing: their answer stands.
                        other => Ok(other),
                    };
                    let answer = outcome.and_then(|outcome| finish(waiting.record, outcome));
                    let _ = waiting.answer.send(answer);
                }
            }
            Err(Failure::Before(error) | Failure::Commit(_, error)) if error.is_unavailable() => {
                let reason = error.to_string();
                for waiting in group {
                    let _ = waiting.answer.send(Err(StoreError::Lost(reason.clone())));
                }
            }
            // A failure of the group's own (a statement refused): each send is stored
            // again alone, and a send alone keeps its failure.
            Err(Failure::Before(error) | Failure::Commit(_, error)) => {
                if group.len() == 1 {
                    if let Some(waiting) = group.into_iter().next() {
                        let _ = waiting.answer.send(Err(error));
                    }
                    return;
                }
                tracing::debug!(%error, sends = group.len(), "a group failed; storing its sends one by one");
                for waiting in group {
                    let answer = self.write_alone(&waiting.record).await;
                    let _ = waiting
                        .answer
                        .send(answer.and_then(|outcome| finish(waiting.record, outcome)));
                }
            }
        }
    }

    /// One send of a failed group in a transaction of its own.
    async fn write_alone(&mut self, record: &NewMessageRecord) -> Result<Outcome, StoreError> {
        match self.store(&[record]).await {
            Ok(mut outcomes) => outcomes
                .pop()
                .ok_or_else(|| StoreError::Lost("a send answered no row".to_owned())),
            Err(Failure::Commit(mut outcomes, lost)) if lost.is_unavailable() => {
                match outcomes.pop() {
                    Some(Outcome::Created(id)) => {
                        let key = sql::conversation_key(record.sender_id, record.receiver_id);
                        self.resolve_lost_commit(id, key, lost)
                            .await
                            .map(|()| Outcome::Created(id))
                    }
                    Some(outcome) => Ok(outcome),
                    None => Err(lost),
                }
            }
            Err(Failure::Before(error) | Failure::Commit(_, error)) => Err(error),
        }
    }

    /// Decides a new message `id` whose `COMMIT` failed with a lost connection: Ok if
    /// it is stored, else `lost`. The commit may have reached Postgres and succeeded
    /// with only its answer lost, so `Unavailable` (a 503 the client retries after)
    /// could stand for a stored message. A fresh connection takes the same participant
    /// locks, which the broken transaction holds until it has committed or aborted,
    /// then looks the id up: stored means committed. If the question cannot be answered
    /// (the database is still out of reach, or the old backend keeps its locks past the
    /// lock timeout), `lost` stands.
    async fn resolve_lost_commit(
        &mut self,
        id: MessageId,
        key: (i64, i64),
        lost: StoreError,
    ) -> Result<(), StoreError> {
        let mut resolved = Err(StoreError::Lost("not asked".to_owned()));
        // A few attempts: the fault that broke the commit often breaks the next
        // connection too. Each attempt opens a connection first, which paces them.
        for _ in 0..RESOLUTION_ATTEMPTS {
            resolved = match self.connect().await {
                Ok(mut connection) => {
                    let answer = stored(&mut connection, id, key).await;
                    if answer.is_ok() {
                        self.connection = Some(connection);
                    }
                    answer
                }
                Err(error) => Err(error),
            };
            if resolved.is_ok() {
                break;
            }
        }
        match resolved {
            Ok(true) => {
                tracing::info!(
                    id = id.get(),
                    "a commit whose answer was lost had succeeded"
                );
                Ok(())
            }
            Ok(false) => Err(lost),
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether a lost commit succeeded");
                Err(lost)
            }
        }
    }
}

/// One transaction for `records`: one statement takes the locks of all their
/// participants and inserts all of them, then the jobs of each stored one.
async fn store_group(
    connection: &mut PgConnection,
    records: &[&NewMessageRecord],
) -> Result<Vec<Outcome>, Failure> {
    let mut users: Vec<i64> = records
        .iter()
        .flat_map(|r| [r.sender_id.get(), r.receiver_id.get()])
        .collect();
    users.sort_unstable();
    users.dedup();
    let mut tx = connection.begin().await?;
    let rows: Vec<(i64, bool)> = sqlx::query_as(sql::INSERT_GROUP)
        .bind(column(records, |r| r.sender_id.get()))
        .bind(column(records, |r| r.receiver_id.get()))
        .bind(column(records, |r| r.message.as_str()))
        .bind(column(records, |r| r.client_message_id.as_deref()))
        .bind(column(records, |r| r.created_at))
        .bind(&users)
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
            // In the same transaction as the message: both or neither. No round trip
            // when there are none (no webhooks configured).
            if !record.jobs.is_empty() {
                insert_jobs(&mut *tx, &record.jobs, Some(id), record.created_at).await?;
            }
            Outcome::Created(id)
        } else {
            // The key is taken (return its holder), or a block refused it.
            match key_holder(&mut tx, record).await? {
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

/// One field of every record, in order: a column of the group's insert.
fn column<'r, T>(
    records: &[&'r NewMessageRecord],
    field: impl Fn(&'r NewMessageRecord) -> T,
) -> Vec<T> {
    records.iter().map(|r| field(r)).collect()
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
