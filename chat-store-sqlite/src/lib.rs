//! The embedded SQLite store of the chat library: a [`MessageRepository`] on rusqlite,
//! the default of the reference server.
//!
//! - **Durable.** WAL with `synchronous = FULL`: when a write returns `Ok`, it is on
//!   disk.
//! - **Fast anyway.** One writer thread commits every queued write in one transaction
//!   (group commit), so many concurrent senders share each disk flush.
//! - **Never blocks the executor.** The writer has its own thread; reads run on
//!   tokio's blocking threads, each on its own connection, while the writer commits.
//! - **Migrated on open.** The schema is versioned; opening a file from an older release
//!   upgrades it, opening one from a newer release is refused.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use chat_core::{ChatService, InProcessNotifier, SendMessage, UserId};
//! use chat_store_sqlite::SqliteStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("chat.db")).await?;
//! let chat = ChatService::new(Arc::new(store), Arc::new(InProcessNotifier::new()));
//! let sent = chat
//!     .send(UserId::new(1), SendMessage {
//!         receiver_id: UserId::new(2),
//!         message: "stored durably".into(),
//!         client_message_id: None,
//!     })
//!     .await?;
//! assert_eq!(sent.message.id.get(), 1);
//! # Ok::<(), chat_core::Error>(())
//! # }).unwrap();
//! ```

mod backlog;
mod catch_up;
mod error;
mod first_by_id;
mod migrations;
mod readers;
mod sql;
mod status;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::timestamp::to_unix_micros;
use chat_core::{
    ConversationSummary, Error, HistoryPage, Inserted, Message, MessageId, MessageRepository,
    MessageStatus, NewMessageRecord, UserId,
};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::readers::ReaderPool;
use crate::writer::Writer;

/// The rusqlite this store is built with, so callers use the matching version.
pub use rusqlite;

/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// WAL pages between automatic checkpoints (SQLite's default is 1,000).
const WAL_CHECKPOINT_PAGES: i64 = 10_000;
/// Reader connections per store.
const READERS: usize = 4;

/// A [`MessageRepository`] in one SQLite file (or in memory). Cloning is cheap and
/// shares the writer and the readers.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: Writer,
    /// `None` in memory: there the writer's connection is the only one.
    readers: Option<Arc<ReaderPool>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates its schema.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        run_blocking(move || {
            let mut conn = Connection::open(&path)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(%mode, "SQLite did not switch to WAL; reads may wait for writes");
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            // Checkpoint every ~40 MiB of WAL instead of ~4 MiB: the pages an insert
            // dirties (index leaves of active conversations) are rewritten by many
            // batches in a row, and a checkpoint copies each page once, however often
            // it changed since the last one.
            conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
            configure(&conn)?;
            migrations::migrate(&mut conn)?;
            Ok(Self {
                writer: Writer::spawn(conn)?,
                readers: Some(Arc::new(ReaderPool::new(path, READERS))),
            })
        })
        .await
    }

    /// A private database in memory, gone when the last clone is dropped.
    pub async fn open_in_memory() -> Result<Self, Error> {
        run_blocking(|| {
            let mut conn = Connection::open_in_memory()?;
            configure(&conn)?;
            migrations::migrate(&mut conn)?;
            Ok(Self {
                writer: Writer::spawn(conn)?,
                readers: None,
            })
        })
        .await
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64, Error> {
        self.read(migrations::version).await
    }

    /// The schema version this release writes.
    pub const LATEST_SCHEMA_VERSION: i64 = migrations::LATEST;

    async fn read<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.readers {
            Some(pool) => pool.read(work).await,
            None => self.writer.read(work).await,
        }
    }
}

pub(crate) fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Savepoint journals and sort spills stay off the disk.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(32);
    // Plans fixed when a statement is prepared. Otherwise SQLite prepares a cached
    // statement again whenever a value bound to a range or LIMIT changes (every page of
    // a catch-up, every conversation of a merge), which cost more than the reads.
    // Every plan is checked by the `EXPLAIN QUERY PLAN` tests in `sql.rs`.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::ReaderTask(e.to_string()))?
        .map_err(Error::from)
}

fn limit(n: u32) -> i64 {
    i64::from(n)
}

fn collect_messages(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Message>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, sql::message_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn insert(conn: &Connection, record: NewMessageRecord) -> Result<Inserted, StoreError> {
    let sender = record.sender_id.get();
    let receiver = record.receiver_id.get();
    let id: Option<i64> = conn
        .prepare_cached(sql::INSERT)?
        .query_row(
            params![
                sender,
                receiver,
                record.message,
                record.client_message_id,
                to_unix_micros(record.created_at)
            ],
            |row| row.get(0),
        )
        .optional()?;
    match id {
        Some(id) => {
            conn.prepare_cached(sql::TOUCH_CONVERSATIONS)?
                .execute(params![sender, receiver, id])?;
            Ok(Inserted {
                message: record.into_message(MessageId::new(id)),
                created: true,
            })
        }
        // The only uniqueness rule is the idempotency key: return its holder.
        None => {
            let existing = conn.prepare_cached(sql::BY_CLIENT_ID)?.query_row(
                params![sender, record.client_message_id],
                sql::message_from_row,
            )?;
            Ok(Inserted {
                message: existing,
                created: false,
            })
        }
    }
}

/// A stored count as a `u64`; a negative one (never written by this store) reads as 0.
fn count(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

#[async_trait]
impl MessageRepository for SqliteStore {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        self.writer.write(move |conn| insert(conn, record)).await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(sql::GET)?
                .query_row([id.get()], sql::message_from_row)
                .optional()?)
        })
        .await
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit_: u32,
    ) -> Result<HistoryPage, Error> {
        let (low, high) = sql::conversation_key(a, b);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // One snapshot for the page and its total.
            let tx = conn.unchecked_transaction()?;
            let total: i64 = tx
                .prepare_cached(sql::CONVERSATION_TOTAL)?
                .query_row([low, high], |row| row.get(0))
                .optional()?
                .unwrap_or(0);
            let messages = collect_messages(
                &tx,
                sql::HISTORY_PAGE,
                params![low, high, limit(limit_), offset],
            )?;
            tx.finish()?;
            Ok(HistoryPage {
                messages,
                total: u64::try_from(total).map_err(|_| StoreError::Corrupt("message_count"))?,
            })
        })
        .await
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit_: u32,
    ) -> Result<Vec<Message>, Error> {
        let (low, high) = sql::conversation_key(a, b);
        let before = before.map_or(i64::MAX, MessageId::get);
        self.read(move |conn| {
            collect_messages(
                conn,
                sql::HISTORY_BEFORE,
                params![low, high, before, limit(limit_)],
            )
        })
        .await
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit_: u32,
    ) -> Result<Vec<Message>, Error> {
        let (low, high) = sql::conversation_key(a, b);
        self.read(move |conn| {
            collect_messages(
                conn,
                sql::HISTORY_AFTER,
                params![low, high, after.get(), limit(limit_)],
            )
        })
        .await
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
    ) -> Result<Vec<Message>, Error> {
        let ids = ids.to_vec();
        self.writer
            .write(move |conn| status::set(conn, receiver, ids, status, at))
            .await
    }

    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
    ) -> Result<Vec<MessageId>, Error> {
        let up_to = up_to.map_or(i64::MAX, MessageId::get);
        self.writer
            .write(move |conn| status::mark_conversation_read(conn, receiver, sender, up_to, at))
            .await
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit_: u32,
    ) -> Result<Vec<Message>, Error> {
        let limit_ = usize::try_from(limit_).unwrap_or(usize::MAX);
        self.read(move |conn| backlog::undelivered(conn, receiver, after, limit_))
            .await
    }

    async fn messages_after(
        &self,
        user: UserId,
        after: MessageId,
        limit_: u32,
    ) -> Result<Vec<Message>, Error> {
        let limit_ = usize::try_from(limit_).unwrap_or(usize::MAX);
        self.read(move |conn| catch_up::after_for_user(conn, user, after, limit_))
            .await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit_: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        let before = before.map_or(i64::MAX, MessageId::get);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql::CONVERSATIONS)?;
            let rows = stmt.query_map(params![user.get(), before, limit(limit_)], |row| {
                Ok(ConversationSummary {
                    last_message: sql::message_from_row(row)?,
                    counterpart: UserId::new(row.get(10)?),
                    unread_count: count(row.get(11)?),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        self.read(move |conn| {
            let total: i64 = conn
                .prepare_cached(sql::UNREAD_TOTAL)?
                .query_row([user.get()], |row| row.get(0))?;
            Ok(count(total))
        })
        .await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}
