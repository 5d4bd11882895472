//! The embedded SQLite store of the chat library: a [`MessageRepository`] on rusqlite,
//! the default of the reference server.
//!
//! - **Durable.** WAL with `synchronous = FULL`: when a write returns `Ok`, it is on
//!   disk.
//! - **Fast anyway.** One writer thread commits every queued write in one transaction
//!   (group commit), so many concurrent senders share each disk flush.
//! - **Never blocks the executor.** The writer has its own thread; reads run on
//!   tokio's blocking threads, each on its own connection, while the writer commits.
//! - **Checkpoints off the write path.** A thread of its own copies the log back into
//!   the database file once it holds 40,000 pages, so beside the database the
//!   `-wal` file grows to about 164 MB under steady writes (at most about 655 MB if
//!   the copying falls behind) and is reused from its start, not shrunk.
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

mod amend;
mod backlog;
mod catch_up;
mod checkpoints;
mod conversations;
mod error;
mod first_by_id;
mod history;
mod insert;
mod jobs;
mod migrations;
mod readers;
mod relations;
mod sql;
mod status;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{
    Amendment, Block, Blocked, Change, Claimed, ConversationSummary, Error, FeedEntry, HistoryPage,
    Inserted, Job, JobId, JobState, JobStore, Message, MessageId, MessageRepository, MessageStatus,
    NewJob, NewMessageRecord, Outcome, UserId,
};
use rusqlite::Connection;
use time::OffsetDateTime;

use crate::checkpoints::Checkpoints;
use crate::error::StoreError;
use crate::readers::ReaderPool;
use crate::writer::Writer;

/// The rusqlite this store is built with, so callers use the matching version.
pub use rusqlite;

/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections per store.
const READERS: usize = 4;

/// A [`MessageRepository`] in one SQLite file (or in memory). Cloning is cheap and
/// shares the writer and the readers.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: Writer,
    /// `None` in memory: there the writer's connection is the only one.
    readers: Option<Arc<ReaderPool>>,
    /// Every user who blocks or is blocked by someone (or once was, since this
    /// store opened): only their sends pay for the check of the blocks table.
    in_blocks: relations::InBlocks,
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
            configure(&conn)?;
            migrations::migrate(&mut conn)?;
            let in_blocks = relations::InBlocks::load(&conn)?;
            let checkpoints = Checkpoints::start(&conn, &path)?;
            Ok(Self {
                writer: Writer::spawn(conn, Some(checkpoints))?,
                readers: Some(Arc::new(ReaderPool::new(path, READERS))),
                in_blocks,
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
            let in_blocks = relations::InBlocks::load(&conn)?;
            Ok(Self {
                writer: Writer::spawn(conn, None)?,
                readers: None,
                in_blocks,
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
    // Room for every statement the store has (about 50), so none is prepared again.
    conn.set_prepared_statement_cache_capacity(64);
    // The text of a deleted message leaves the file: freed bytes are overwritten where
    // that costs no extra writes (`FAST`; the old page images leave the WAL at the
    // next checkpoint).
    conn.pragma_update(None, "secure_delete", "FAST")?;
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
        .map_err(|e| StoreError::BlockingTaskLost(e.to_string()))?
        .map_err(Error::from)
}

/// One line a method: a job for the writer or a read, running the module that holds
/// its SQL.
#[async_trait]
impl MessageRepository for SqliteStore {
    async fn insert(&self, record: NewMessageRecord) -> Result<Inserted, Error> {
        let in_blocks = self.in_blocks.clone();
        self.writer
            .write(move |conn| {
                let checked = in_blocks.either(record.sender_id, record.receiver_id);
                insert::insert(conn, record, checked)
            })
            .await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error> {
        self.read(move |conn| history::get(conn, id)).await
    }

    async fn history_page(
        &self,
        a: UserId,
        b: UserId,
        offset: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        self.read(move |conn| history::page(conn, (a, b), offset, limit))
            .await
    }

    async fn history_before(
        &self,
        a: UserId,
        b: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let bound = before.map_or(i64::MAX, MessageId::get);
        self.read(move |conn| history::slice(conn, sql::HISTORY_BEFORE, (a, b), bound, limit))
            .await
    }

    async fn history_after(
        &self,
        a: UserId,
        b: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let bound = after.get();
        self.read(move |conn| history::slice(conn, sql::HISTORY_AFTER, (a, b), bound, limit))
            .await
    }

    async fn set_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<Message>, Error> {
        let ids = ids.to_vec();
        let jobs = jobs.to_vec();
        self.writer
            .write(move |conn| {
                let changed = status::set(conn, receiver, ids, status, at)?;
                for message in &changed {
                    jobs::enqueue(conn, &jobs, Some(message.id), at)?;
                }
                Ok(changed)
            })
            .await
    }

    async fn mark_conversation_read(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<MessageId>, Error> {
        let up_to = up_to.map_or(i64::MAX, MessageId::get);
        let jobs = jobs.to_vec();
        self.writer
            .write(move |conn| {
                let changed = status::mark_conversation_read(conn, receiver, sender, up_to, at)?;
                for &id in &changed {
                    jobs::enqueue(conn, &jobs, Some(id), at)?;
                }
                Ok(changed)
            })
            .await
    }

    async fn undelivered(
        &self,
        receiver: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.read(move |conn| backlog::undelivered(conn, receiver, after, limit))
            .await
    }

    async fn feed_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<FeedEntry>, Error> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.read(move |conn| catch_up::feed_after(conn, user, after, limit))
            .await
    }

    async fn amend(
        &self,
        sender: UserId,
        id: MessageId,
        amendment: Amendment,
        at: OffsetDateTime,
    ) -> Result<Option<Change>, Error> {
        self.writer
            .write(move |conn| amend::amend(conn, sender, id, amendment, at))
            .await
    }

    async fn conversations(
        &self,
        user: UserId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, Error> {
        self.read(move |conn| conversations::list(conn, user, before, limit))
            .await
    }

    async fn unread_total(&self, user: UserId) -> Result<u64, Error> {
        self.read(move |conn| conversations::unread_total(conn, user))
            .await
    }

    async fn block(
        &self,
        blocker: UserId,
        blocked: UserId,
        at: OffsetDateTime,
    ) -> Result<Blocked, Error> {
        let in_blocks = self.in_blocks.clone();
        self.writer
            .write(move |conn| {
                // Before the block is written: an insert after it in the writer's
                // order checks the table.
                in_blocks.add(blocker, blocked);
                relations::block(conn, blocker, blocked, at)
            })
            .await
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, Error> {
        self.writer
            .write(move |conn| relations::unblock(conn, blocker, blocked))
            .await
    }

    async fn blocks(&self, blocker: UserId) -> Result<Vec<Block>, Error> {
        self.read(move |conn| relations::blocks(conn, blocker))
            .await
    }

    async fn blocked_among(&self, user: UserId, others: &[UserId]) -> Result<Vec<UserId>, Error> {
        let others = others.to_vec();
        self.read(move |conn| relations::blocked_among(conn, user, &others))
            .await
    }

    async fn acquainted_among(
        &self,
        user: UserId,
        others: &[UserId],
    ) -> Result<Vec<UserId>, Error> {
        let others = others.to_vec();
        self.read(move |conn| relations::acquainted_among(conn, user, &others))
            .await
    }

    async fn set_last_seen(&self, user: UserId, at: OffsetDateTime) -> Result<(), Error> {
        self.writer
            .write(move |conn| relations::set_last_seen(conn, user, at))
            .await
    }

    async fn last_seen(&self, users: &[UserId]) -> Result<Vec<(UserId, OffsetDateTime)>, Error> {
        let users = users.to_vec();
        self.read(move |conn| relations::last_seen(conn, &users))
            .await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

/// The job outbox: claims and finishes go through the single writer, so two claims
/// never hand out the same job; lists are reads.
#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue(&self, jobs: Vec<NewJob>, now: OffsetDateTime) -> Result<Vec<JobId>, Error> {
        self.writer
            .write(move |conn| jobs::enqueue(conn, &jobs, None, now))
            .await
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>, Error> {
        self.writer
            .write(move |conn| jobs::claim(conn, now, lease, limit))
            .await
    }

    async fn finish(&self, id: JobId, lease: u64, outcome: Outcome) -> Result<bool, Error> {
        self.writer
            .write(move |conn| jobs::finish(conn, id, lease, &outcome))
            .await
    }

    async fn finish_many(&self, finished: Vec<(JobId, u64, Outcome)>) -> Result<Vec<bool>, Error> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        // One write for all: one savepoint, and one place in the writer's queue.
        self.writer
            .write(move |conn| {
                finished
                    .iter()
                    .map(|(id, lease, outcome)| jobs::finish(conn, *id, *lease, outcome))
                    .collect()
            })
            .await
    }

    async fn list(&self, state: JobState, limit: u32) -> Result<Vec<Job>, Error> {
        self.read(move |conn| jobs::list(conn, state, limit)).await
    }

    async fn retry(&self, id: JobId, now: OffsetDateTime) -> Result<bool, Error> {
        self.writer
            .write(move |conn| jobs::retry(conn, id, now))
            .await
    }

    async fn discard(&self, id: JobId) -> Result<bool, Error> {
        self.writer.write(move |conn| jobs::discard(conn, id)).await
    }
}
