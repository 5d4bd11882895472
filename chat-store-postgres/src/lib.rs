//! The Postgres store of the chat library: a [`MessageRepository`] on sqlx, shared by
//! every node of a deployment.
//!
//! - **Gap-free cursors.** Postgres sequences can commit out of order, so each insert
//!   takes transaction-scoped advisory locks on both participants before its id is
//!   drawn. For any one user, ids then commit in ascending order, and a device
//!   resuming "after id N" never skips a message that commits later with a smaller id.
//! - **Group commit.** Sends this node stores at the same moment share one transaction
//!   and one commit flush; each is answered once that commit is durable. They are
//!   written by a thread of the store's own, on a connection of its own opened with the
//!   pool's options and `search_path`; it ends with the last handle to the store.
//! - **Idempotent under concurrency.** A unique index on `(sender_id,
//!   client_message_id)` decides; the loser of a race gets the original row.
//! - **Errors.** A lost connection is `Error::Unavailable`; the pool tests connections
//!   before handing them out, so it recovers by itself after Postgres restarts. An
//!   insert whose `COMMIT` lost its answer is looked up on a fresh connection before
//!   it is reported unavailable, so a stored message is not answered as a failure.
//! - **Schemas.** [`PostgresStore::connect_with_schema`] keeps the tables in a schema
//!   of their own, so tenants or test runs can share one database.
//!
//! ```no_run
//! # async fn example() -> Result<(), chat_core::Error> {
//! use chat_store_postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://chat@127.0.0.1/chat").await?;
//! store.migrate().await?;
//! # Ok(()) }
//! ```

mod amend;
mod error;
mod group;
mod insert;
mod jobs;
mod reads;
mod relations;
mod sql;
mod status;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{
    Amendment, Block, Blocked, Change, Claimed, ConversationSummary, Error, FeedEntry, HistoryPage,
    Inserted, Job, JobId, JobState, JobStore, Message, MessageId, MessageRepository, MessageStatus,
    NewJob, NewMessageRecord, Outcome, UserId,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor};
use time::OffsetDateTime;

use crate::error::StoreError;

/// The sqlx this store is built with, so callers use the matching version.
pub use sqlx;

/// Connections in a pool made by [`PostgresStore::connect`].
const POOL_SIZE: u32 = 16;
/// Attempts to find out whether a commit whose answer was lost succeeded.
const RESOLUTION_ATTEMPTS: usize = 5;
/// How long a request waits for a free connection before the store reports itself
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`MessageRepository`] in Postgres. Cloning is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Option<String>,
    /// Sends waiting for this node's next group transaction.
    group: Arc<group::Group>,
}

/// Checks a schema name: it is spliced into SQL, so only plain identifiers pass.
fn checked_schema(schema: &str) -> Result<String, StoreError> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(schema.to_owned())
    } else {
        Err(StoreError::SchemaName(schema.to_owned()))
    }
}

impl PostgresStore {
    /// A store on an existing pool (its connections' `search_path` decides the schema).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            schema: None,
            group: Arc::default(),
        }
    }

    /// Connects a pool to `url`, tables in the default schema.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Ok(Self::connect_inner(url, None).await?)
    }

    /// Connects a pool to `url`, tables in `schema` (1–63 of `[a-z0-9_]`, starting with a
    /// letter), created by [`migrate`](Self::migrate) if missing.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, Error> {
        let schema = checked_schema(schema)?;
        Ok(Self::connect_inner(url, Some(schema)).await?)
    }

    async fn connect_inner(url: &str, schema: Option<String>) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        // Named after the schema too, so operators (and tests) can tell pools apart.
        let name = schema
            .as_deref()
            .map_or_else(|| "chat".to_owned(), |schema| format!("chat/{schema}"));
        let options = options.application_name(&name);
        let search_path = schema.clone();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(true)
            .after_connect(move |conn, _meta| {
                let search_path = search_path.clone();
                Box::pin(async move {
                    if let Some(schema) = search_path {
                        // The name was checked to be a plain identifier.
                        let sql = AssertSqlSafe(format!("SET search_path TO {schema}"));
                        conn.execute(sqlx::raw_sql(sql)).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            schema,
            group: Arc::default(),
        })
    }

    /// Creates the schema if one was given, then applies the embedded migrations that
    /// are not applied yet (versioned, so an existing database is upgraded in place).
    pub async fn migrate(&self) -> Result<(), Error> {
        Ok(self.migrate_schema().await?)
    }

    async fn migrate_schema(&self) -> Result<(), StoreError> {
        if let Some(schema) = &self.schema {
            let sql = AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
            self.pool.execute(sqlx::raw_sql(sql)).await?;
        }
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// The pool: every read and change but the insert of new messages, which goes
    /// through the store's own writer connection (closing the pool leaves that one
    /// open until the store is dropped).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema given at connection, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

/// Each call delegates to the module that holds its SQL; the store's failures become
/// the core's errors in one place (`From<StoreError>`), at the `?` of each line.
#[async_trait]
impl MessageRepository for PostgresStore {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        Ok(self.insert_in_group(record).await?)
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        Ok(self.message(id).await?)
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        Ok(self.page(a, b, offset, limit).await?)
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let bound = before.map_or(i64::MAX, MessageId::get);
        Ok(self
            .conversation_slice(sql::HISTORY_BEFORE, (a, b), bound, limit)
            .await?)
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        Ok(self
            .conversation_slice(sql::HISTORY_AFTER, (a, b), after.get(), limit)
            .await?)
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<Message>, Error> {
        Ok(self.change_status(receiver, ids, status, at, jobs).await?)
    }

    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<MessageId>, Error> {
        Ok(self
            .read_conversation(receiver, sender, up_to, at, jobs)
            .await?)
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        Ok(self
            .user_slice(sql::UNDELIVERED, receiver, after, limit)
            .await?)
    }

    async fn feed_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, Error> {
        Ok(self.feed(user, after, limit).await?)
    }

    async fn amend(
        &self,
        sender: UserId,
        id: MessageId,
        amendment: Amendment,
        at: OffsetDateTime,
    ) -> Result<Option<Change>, Error> {
        Ok(self.amend_message(sender, id, amendment, at).await?)
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        Ok(self.conversation_list(user, before, limit).await?)
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        Ok(self.unread(user).await?)
    }

    async fn block(
        &self,
        blocker: UserId,
        blocked: UserId,
        at: OffsetDateTime,
    ) -> Result<Blocked, Error> {
        Ok(self.add_block(blocker, blocked, at).await?)
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, Error> {
        Ok(self.remove_block(blocker, blocked).await?)
    }

    async fn blocks(&self, blocker: UserId) -> Result<Vec<Block>, Error> {
        Ok(self.list_blocks(blocker).await?)
    }

    async fn blocked_among(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>, Error> {
        Ok(self.users_among(sql::BLOCKED_AMONG, user, others).await?)
    }

    async fn acquainted_among(
        &self,
        user: UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, Error> {
        Ok(self
            .users_among(sql::ACQUAINTED_AMONG, user, others)
            .await?)
    }

    async fn set_last_seen(&self, user: UserId, at: OffsetDateTime) -> Result<(), Error> {
        Ok(self.store_last_seen(user, at).await?)
    }

    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<(UserId, OffsetDateTime)>, Error> {
        Ok(self.stored_last_seen(users).await?)
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(self.answer().await?)
    }
}

/// The job outbox; each call delegates to `jobs.rs`.
#[async_trait]
impl JobStore for PostgresStore {
    async fn enqueue(&self, jobs: Vec<NewJob>, now: OffsetDateTime) -> Result<Vec<JobId>, Error> {
        Ok(self.enqueue_jobs(jobs, now).await?)
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>, Error> {
        Ok(self.claim_jobs(now, lease, limit).await?)
    }

    async fn finish(&self, id: JobId, lease: u64, outcome: Outcome) -> Result<bool, Error> {
        Ok(self.finish_job(id, lease, outcome).await?)
    }

    async fn list(&self, state: JobState, limit: u32) -> Result<Vec<Job>, Error> {
        Ok(self.list_jobs(state, limit).await?)
    }

    async fn retry(&self, id: JobId, now: OffsetDateTime) -> Result<bool, Error> {
        Ok(self.retry_job(id, now).await?)
    }

    async fn discard(&self, id: JobId) -> Result<bool, Error> {
        Ok(self.discard_job(id).await?)
    }
}
