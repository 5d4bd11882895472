//! The single writer thread and its group commit.
//!
//! A durable commit waits for the disk to flush, which takes milliseconds; one commit
//! per message would cap throughput at the flush rate. Instead every write is queued
//! to one thread that takes everything waiting, runs it in one transaction and commits
//! once: each caller hears back only after that commit, so `Ok` still means durable.

use std::thread;

use chat_core::Error;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;

/// Most jobs committed together.
const MAX_BATCH: usize = 1024;
/// Jobs that may wait for the writer before senders wait too.
const QUEUE: usize = 8192;

/// Runs in the batch transaction; says whether it succeeded and how to report the
/// outcome once the batch commit has (or has not) happened.
type WriteJob = Box<dyn FnOnce(&Connection) -> Staged + Send>;
/// Runs outside any transaction (used when the writer is also the only reader).
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

struct Staged {
    ok: bool,
    report: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

enum Job {
    Read(ReadJob),
    Write(WriteJob),
}

/// A handle to the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        thread::Builder::new()
            .name("chat-sqlite-writer".to_owned())
            .spawn(move || run(conn, queue))
            .map_err(|e| StoreError::CommitFailed(format!("cannot start the writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next batch; resolves after the batch committed. If `work`
    /// fails, its changes are rolled back and the rest of the batch is unaffected.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = work(conn);
            Staged {
                ok: result.is_ok(),
                report: Box::new(move |committed| {
                    // The caller may have gone away; the write stands regardless.
                    let _ = reply.send(committed.and(result));
                }),
            }
        });
        self.jobs
            .send(Job::Write(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        // A dropped reply means the batch could not even begin (logged by the writer).
        Ok(answer.await.map_err(|_| StoreError::WriterStopped)??)
    }

    /// Runs `work` on the writer's connection outside the batch transaction.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        self.jobs
            .send(Job::Read(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        Ok(answer.await.map_err(|_| StoreError::WriterStopped)??)
    }
}

fn run(conn: Connection, mut queue: mpsc::Receiver<Job>) {
    let mut writes: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Read(read) => read(&conn),
                Job::Write(write) => writes.push(write),
            }
            if writes.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            commit_batch(&conn, &mut writes);
        }
    }
}

/// Runs a fixed statement through the statement cache: it is parsed once, not per job.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn commit_batch(conn: &Connection, writes: &mut Vec<WriteJob>) {
    if let Err(error) = run_cached(conn, "BEGIN IMMEDIATE") {
        tracing::error!(%error, jobs = writes.len(), "cannot begin a write batch");
        // Dropping the jobs drops their reply senders: each caller gets WriterStopped.
        writes.clear();
        return;
    }
    let mut staged = Vec::with_capacity(writes.len());
    for write in writes.drain(..) {
        // A savepoint per job: a failing job leaves no half of its changes behind.
        if let Err(error) = run_cached(conn, "SAVEPOINT job") {
            tracing::error!(%error, "cannot open a savepoint");
            continue;
        }
        let job = write(conn);
        let closed = if job.ok {
            run_cached(conn, "RELEASE job")
        } else {
            run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job"))
        };
        if let Err(error) = closed {
            tracing::error!(%error, "cannot close a savepoint");
        }
        staged.push(job);
    }
    match run_cached(conn, "COMMIT") {
        Ok(()) => {
            for job in staged {
                (job.report)(Ok(()));
            }
        }
        Err(error) => {
            tracing::error!(%error, jobs = staged.len(), "a write batch failed to commit");
            let message = error.to_string();
            if let Err(error) = conn.execute_batch("ROLLBACK") {
                tracing::error!(%error, "cannot roll back a failed batch");
            }
            for job in staged {
                (job.report)(Err(StoreError::CommitFailed(message.clone())));
            }
        }
    }
}
