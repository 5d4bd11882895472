//! The Postgres store of the chat library: a [`MessageRepository`] on sqlx, shared by
//! every node of a deployment.
//!
//! - **Gap-free cursors.** Postgres sequences can commit out of order, so each insert
//!   takes transaction-scoped advisory locks on both participants before its id is
//!   drawn. For any one user, ids then commit in ascending order, and a device
//!   resuming "after id N" never skips a message that commits later with a smaller id.
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

mod error;
mod sql;

use std::time::Duration;

use async_trait::async_trait;
use chat_core::{
    ConversationSummary, Error, HistoryPage, Inserted, Message, MessageId, MessageRepository,
    MessageStatus, NewMessageRecord, UserId,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, Row};
use time::OffsetDateTime;

use crate::error::{StoreError, db};

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
        Self { pool, schema: None }
    }

    /// Connects a pool to `url`, tables in the default schema.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_inner(url, None).await
    }

    /// Connects a pool to `url`, tables in `schema` (1–63 of `[a-z0-9_]`, starting with a
    /// letter), created by [`migrate`](Self::migrate) if missing.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, Error> {
        let schema = checked_schema(schema).map_err(Error::from)?;
        Self::connect_inner(url, Some(schema)).await
    }

    async fn connect_inner(url: &str, schema: Option<String>) -> Result<Self, Error> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| Error::from(StoreError::from(e)))?;
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
            .await;
        Ok(Self {
            pool: db(pool)?,
            schema,
        })
    }

    /// Creates the schema if one was given, then applies the embedded migrations that
    /// are not applied yet (versioned, so an existing database is upgraded in place).
    pub async fn migrate(&self) -> Result<(), Error> {
        if let Some(schema) = &self.schema {
            let sql = AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
            db(self.pool.execute(sqlx::raw_sql(sql)).await)?;
        }
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .map_err(|e| Error::from(StoreError::from(e)))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema given at connection, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    async fn messages(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<Message>, Error> {
        let rows = db(query.fetch_all(&self.pool).await)?;
        db(rows.iter().map(sql::message_from_row).collect())
    }
}

impl PostgresStore {
    /// Decides an insert whose `COMMIT` failed with a lost connection. The commit may
    /// have reached Postgres and succeeded with only its answer lost, so `Unavailable`
    /// (a 503 the client retries after) could stand for a stored message. A fresh
    /// transaction takes the same participant locks, which the broken transaction holds
    /// until it has committed or aborted, then looks the new id up: stored means
    /// committed. Replays wrote nothing, so their answer stands either way. If the
    /// question cannot be answered (the database is still out of reach, or the old
    /// backend keeps its locks past the lock timeout), the original error stands.
    async fn resolve_lost_commit(
        &self,
        inserted: Inserted,
        (low, high): (i64, i64),
        lost: Error,
    ) -> Result<Inserted, Error> {
        if !inserted.created {
            return Ok(inserted);
        }
        let mut resolved = Err(sqlx::Error::PoolClosed);
        // A few attempts: the fault that broke the commit often breaks the next
        // connection too. Each attempt opens or tests a connection first, which paces them.
        for _ in 0..RESOLUTION_ATTEMPTS {
            resolved = self.stored(inserted.message.id, (low, high)).await;
            if resolved.is_ok() {
                break;
            }
        }
        match resolved {
            Ok(true) => {
                tracing::info!(
                    id = inserted.message.id.get(),
                    "a commit whose answer was lost had succeeded"
                );
                Ok(inserted)
            }
            Ok(false) => Err(lost),
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether a lost commit succeeded");
                Err(lost)
            }
        }
    }

    /// Whether message `id` is stored, asked once its participants' locks are free.
    async fn stored(&self, id: MessageId, (low, high): (i64, i64)) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        tx.execute(sql::RESOLUTION_LOCK_TIMEOUT).await?;
        sqlx::query(sql::LOCK_PARTICIPANTS)
            .bind(low)
            .bind(high)
            .execute(&mut *tx)
            .await?;
        let found = sqlx::query(sql::GET)
            .bind(id.get())
            .fetch_optional(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(found.is_some())
    }
}

fn count(value: i64, column: &'static str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(column).into())
}

#[async_trait]
impl MessageRepository for PostgresStore {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        let (low, high) = sql::conversation_key(record.sender_id, record.receiver_id);
        let mut tx = db(self.pool.begin().await)?;
        db(sqlx::query(sql::LOCK_PARTICIPANTS)
            .bind(low)
            .bind(high)
            .execute(&mut *tx)
            .await)?;
        let id: Option<i64> = db(sqlx::query_scalar(sql::INSERT)
            .bind(record.sender_id.get())
            .bind(record.receiver_id.get())
            .bind(&record.message)
            .bind(&record.client_message_id)
            .bind(record.created_at)
            .fetch_optional(&mut *tx)
            .await)?;
        let inserted = match id {
            Some(id) => Inserted {
                message: record.into_message(MessageId::new(id)),
                created: true,
            },
            // The only uniqueness rule is the idempotency key: return its holder.
            None => {
                let row = db(sqlx::query(sql::BY_CLIENT_ID)
                    .bind(record.sender_id.get())
                    .bind(&record.client_message_id)
                    .fetch_one(&mut *tx)
                    .await)?;
                Inserted {
                    message: db(sql::message_from_row(&row))?,
                    created: false,
                }
            }
        };
        match tx.commit().await {
            Ok(()) => Ok(inserted),
            Err(failure) => match Error::from(StoreError::from(failure)) {
                lost @ Error::Unavailable { .. } => {
                    self.resolve_lost_commit(inserted, (low, high), lost).await
                }
                other => Err(other),
            },
        }
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        let row = db(sqlx::query(sql::GET)
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await)?;
        row.as_ref()
            .map(sql::message_from_row)
            .transpose()
            .map_err(|e| StoreError::from(e).into())
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        let (low, high) = sql::conversation_key(a, b);
        let mut tx = db(self.pool.begin().await)?;
        // One snapshot for the page and its total.
        db(tx
            .execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await)?;
        let total: Option<i64> = db(sqlx::query_scalar(sql::CONVERSATION_TOTAL)
            .bind(a.get())
            .bind(b.get())
            .fetch_optional(&mut *tx)
            .await)?;
        let rows = db(sqlx::query(sql::HISTORY_PAGE)
            .bind(low)
            .bind(high)
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await)?;
        db(tx.commit().await)?;
        Ok(HistoryPage {
            messages: db(rows.iter().map(sql::message_from_row).collect())?,
            total: count(total.unwrap_or(0), "message_count")?,
        })
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let (low, high) = sql::conversation_key(a, b);
        self.messages(
            sqlx::query(sql::HISTORY_BEFORE)
                .bind(low)
                .bind(high)
                .bind(before.map_or(i64::MAX, MessageId::get))
                .bind(i64::from(limit)),
        )
        .await
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let (low, high) = sql::conversation_key(a, b);
        self.messages(
            sqlx::query(sql::HISTORY_AFTER)
                .bind(low)
                .bind(high)
                .bind(after.get())
                .bind(i64::from(limit)),
        )
        .await
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
    ) -> Result<Vec<Message>, Error> {
        let statement = match status {
            MessageStatus::Sent => return Ok(Vec::new()),
            MessageStatus::Delivered => sql::MARK_DELIVERED,
            MessageStatus::Read => sql::MARK_READ,
        };
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let mut changed = self
            .messages(
                sqlx::query(statement)
                    .bind(at)
                    .bind(ids)
                    .bind(receiver.get()),
            )
            .await?;
        changed.sort_unstable_by_key(|m| m.id);
        Ok(changed)
    }

    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
    ) -> Result<Vec<MessageId>, Error> {
        let rows = db(sqlx::query(sql::MARK_READ_UP_TO)
            .bind(at)
            .bind(receiver.get())
            .bind(sender.get())
            .bind(up_to.map_or(i64::MAX, MessageId::get))
            .fetch_all(&self.pool)
            .await)?;
        let mut ids: Vec<MessageId> = db(rows
            .iter()
            .map(|row| row.try_get::<i64, _>(0).map(MessageId::new))
            .collect())?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.messages(
            sqlx::query(sql::UNDELIVERED)
                .bind(receiver.get())
                .bind(after.get())
                .bind(i64::from(limit)),
        )
        .await
    }

    async fn messages_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        self.messages(
            sqlx::query(sql::AFTER_FOR_USER)
                .bind(user.get())
                .bind(after.get())
                .bind(i64::from(limit)),
        )
        .await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        let rows = db(sqlx::query(sql::CONVERSATIONS)
            .bind(user.get())
            .bind(before.map_or(i64::MAX, MessageId::get))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await)?;
        rows.iter()
            .map(|row| {
                Ok(ConversationSummary {
                    last_message: db(sql::message_from_row(row))?,
                    counterpart: UserId::new(db(row.try_get("peer_id"))?),
                    unread_count: count(db(row.try_get("unread"))?, "unread")?,
                })
            })
            .collect()
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        let total: i64 = db(sqlx::query_scalar(sql::UNREAD_TOTAL)
            .bind(user.get())
            .fetch_one(&self.pool)
            .await)?;
        count(total, "unread")
    }

    async fn ping(&self) -> Result<(), Error> {
        db(sqlx::query("SELECT 1").execute(&self.pool).await).map(drop)
    }
}
