//! Checkpoints off the write path.
//!
//! In WAL mode every commit appends pages to the write-ahead log, and a checkpoint
//! copies them back into the database file so the log can start over. SQLite's
//! automatic checkpoint runs inside the `COMMIT` that crosses the threshold, on the
//! writer thread: every caller of that batch, and every batch queued behind it, waits
//! for the whole log to be copied and the file flushed (10–20 ms under load). Here the
//! writer only notes the log's length after each commit, and a thread of its own with
//! its own connection does the copying, which in WAL mode runs beside new commits.
//!
//! The log can only start over when a write begins after a checkpoint copied all of
//! it. Under steady writes the background checkpoint always lags a little behind the
//! last commit, so the writer closes the gap itself when it is small: it checkpoints
//! the few pages the background thread has not copied yet, and its next write starts
//! the log over. Should the background thread fall far behind, the writer copies
//! everything itself, as SQLite would, so the log stays bounded.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use crate::error::StoreError;

/// Log pages after which a checkpoint starts (about 164 MB at 4 KiB pages; SQLite's
/// default is 1,000). The pages an insert dirties (index leaves of active
/// conversations) are rewritten by many batches in a row, and a checkpoint copies
/// each page once, however often it changed since the last one.
///
/// Each time the log starts over, the writer pauses for its last copy and flush
/// (1–10 ms under load), so a longer log means fewer pauses: at 10,000 pages, 5,000
/// sends a second paused the writer about four times a second.
#[cfg(not(test))]
const START_PAGES: i64 = 40_000;
/// Pages not yet copied that the writer copies itself rather than wait.
#[cfg(not(test))]
const WRITER_COPIES: i64 = 1_000;
/// Small in tests, so a few thousand inserts go round the log many times.
#[cfg(test)]
const START_PAGES: i64 = 64;
#[cfg(test)]
const WRITER_COPIES: i64 = 16;
/// Log pages at which the writer copies everything itself, however many that is.
const MOST_PAGES: i64 = 4 * START_PAGES;

thread_local! {
    /// The log's length in pages after the last commit on this thread (the writer's).
    static LOG_PAGES: Cell<i64> = const { Cell::new(0) };
}

/// Called by SQLite after each commit on the writer's connection.
fn note_log_pages(_: &Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    LOG_PAGES.with(|log| log.set(i64::from(pages)));
    Ok(())
}

/// The writer's side: decides after each commit whether to ask for a checkpoint.
/// Dropping it ends the background thread.
pub(crate) struct Checkpoints {
    ask: SyncSender<()>,
    /// The log's length when the last checkpoint ended, and how much of it was
    /// copied.
    last: Arc<(AtomicI64, AtomicI64)>,
    /// The log's length after the previous commit: when it shrinks, the log started
    /// over and `last` describes the old one.
    seen: Cell<i64>,
}

impl Checkpoints {
    /// Takes over the checkpoints of `writer` (a connection in WAL mode to `path`):
    /// no more automatic checkpoints inside its commits, a background thread instead.
    pub(crate) fn start(writer: &Connection, path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        crate::configure(&conn)?;
        // Replaces the automatic checkpoint, which is SQLite's own hook.
        writer.wal_hook(Some(note_log_pages));
        let (ask, asked) = sync_channel::<()>(1);
        let last = Arc::new((AtomicI64::new(0), AtomicI64::new(0)));
        let report = Arc::clone(&last);
        thread::Builder::new()
            .name("chat-sqlite-checkpoint".to_owned())
            .spawn(move || {
                while asked.recv().is_ok() {
                    if let Err(error) = checkpoint_into(&conn, &report) {
                        tracing::warn!(%error, "a background checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::WriterNotStarted(e.to_string()))?;
        Ok(Self {
            ask,
            last,
            seen: Cell::new(0),
        })
    }

    /// After a commit on the writer's connection: asks for a checkpoint once the log
    /// is long, and copies the rest itself when little is left or the log is far too
    /// long.
    pub(crate) fn after_commit(&self, writer: &Connection) {
        let pages = LOG_PAGES.with(Cell::get);
        if pages < self.seen.replace(pages) {
            self.last.0.store(0, Ordering::Relaxed);
            self.last.1.store(0, Ordering::Relaxed);
        }
        if pages < START_PAGES {
            return;
        }
        let (log, copied) = (
            self.last.0.load(Ordering::Relaxed),
            self.last.1.load(Ordering::Relaxed),
        );
        // The background thread's figures describe this log only if it has not
        // started over since (it then is shorter than it was).
        let left = if log <= pages { pages - copied } else { pages };
        if left <= WRITER_COPIES || pages >= MOST_PAGES {
            if let Err(error) = checkpoint_into(writer, &self.last) {
                tracing::warn!(%error, "a checkpoint on the writer failed");
            }
            LOG_PAGES.with(|log| log.set(0));
            return;
        }
        match self.ask.try_send(()) {
            // Full: a checkpoint is asked for already.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::warn!("the checkpoint thread is gone; the writer checkpoints");
                let _ = checkpoint(writer);
            }
        }
    }
}

/// A passive checkpoint on `conn`, its outcome noted in `last` (the log's length and
/// the pages copied) unless another checkpoint was running.
fn checkpoint_into(conn: &Connection, last: &(AtomicI64, AtomicI64)) -> rusqlite::Result<()> {
    if let Some((log, copied)) = checkpoint(conn)? {
        last.0.store(log, Ordering::Relaxed);
        last.1.store(copied, Ordering::Relaxed);
    }
    Ok(())
}

/// A passive checkpoint (it never waits for readers, writers or another checkpoint):
/// the log's length and the pages now copied, both in pages; `None` when another
/// checkpoint was running.
fn checkpoint(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let (busy, log, copied): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        Ok((busy == 0 && log >= 0).then_some((log, copied)))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chat_core::MessageRepository;
    use chat_core::testing::record;

    use super::*;
    use crate::SqliteStore;

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_copied_back_and_starts_over_while_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let wal = dir.path().join("chat.db-wal");
        let store = SqliteStore::open(&path).await.unwrap();
        let empty = size(&path);
        // One commit each, from several writers at once: about 8 log pages a
        // message, so without checkpoints the log would pass 20,000 pages.
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..750 {
                        let sender = 1 + (writer * 750 + i) % 40;
                        store
                            .insert(record(sender, 100 + sender, "a message"))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        assert!(
            size(&path) > empty,
            "checkpoints copied pages into the database"
        );
        // The log file keeps its largest length: bounded by the forced checkpoint,
        // plus one batch.
        let page = 4096 + 24;
        assert!(
            size(&wal) < (MOST_PAGES as u64 + 256) * page,
            "the log grew to {} bytes",
            size(&wal)
        );
        let sent = store
            .history_page(chat_core::UserId::new(1), chat_core::UserId::new(101), 0, 1)
            .await
            .unwrap();
        assert!(sent.total > 0);
        drop(store);
        // Everything is there after reopening.
        let store = SqliteStore::open(&path).await.unwrap();
        let mut total = 0;
        for sender in 1..=40 {
            total += store
                .history_page(
                    chat_core::UserId::new(sender),
                    chat_core::UserId::new(100 + sender),
                    0,
                    1,
                )
                .await
                .unwrap()
                .total;
        }
        assert_eq!(total, 3000);
    }
}
