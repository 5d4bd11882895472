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

use crate::checkpoints::Checkpoints;
use crate::error::StoreError;

/// Most jobs committed together.
const MAX_BATCH: usize = 1024;
/// Jobs that may wait for the writer before senders wait too.
const QUEUE: usize = 8192;

/// One caller's write: run inside the batch transaction, then told how the batch
/// ended.
trait WriteJob: Send {
    /// Runs the work; whether it succeeded (a failed job's changes are rolled back).
    fn run(&mut self, conn: &Connection) -> bool;

    /// Answers the caller: its own result once the batch committed, else the batch's
    /// failure (also when the job never ran).
    fn report(self: Box<Self>, batch: Result<(), StoreError>);
}

/// A write waiting for its batch, and the caller waiting for its answer.
struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = self.work.take().map(|work| work(conn));
        let ok = matches!(result, Some(Ok(_)));
        self.result = result;
        ok
    }

    fn report(self: Box<Self>, batch: Result<(), StoreError>) {
        let answer = match (batch, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(error), _) => Err(error),
            (Ok(()), None) => Err(StoreError::BatchAborted("the write never ran".to_owned())),
        };
        // The caller may have gone away; the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// Runs outside any transaction (used when the writer is also the only reader).
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Job {
    Read(ReadJob),
    Write(Box<dyn WriteJob>),
}

/// A handle to the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which hands its checkpoints to
    /// `checkpoints` if given (a file database; in memory there are none).
    pub(crate) fn spawn(
        conn: Connection,
        checkpoints: Option<Checkpoints>,
    ) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        thread::Builder::new()
            .name("chat-sqlite-writer".to_owned())
            .spawn(move || run(conn, queue, checkpoints))
            .map_err(|e| StoreError::WriterNotStarted(e.to_string()))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next batch; resolves after the batch committed. If `work`
    /// fails, its changes are rolled back and the rest of the batch is unaffected; if
    /// the batch itself fails, nothing of it commits and every caller gets the error.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(Job::Write(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
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

fn run(conn: Connection, mut queue: mpsc::Receiver<Job>, checkpoints: Option<Checkpoints>) {
    let mut writes: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
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
            // After the callers heard back: a checkpoint here delays only the next
            // batch, and rarely (see `checkpoints`).
            if let Some(checkpoints) = &checkpoints {
                checkpoints.after_commit(&conn);
            }
        }
    }
}

/// Runs a fixed statement through the statement cache: it is parsed once, not per job.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    #[cfg(test)]
    faults::check(sql)?;
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs every job in one transaction, each under a savepoint, and commits once.
///
/// A job that fails is rolled back to its savepoint and the others stand. A savepoint
/// that cannot be opened or rolled back leaves the transaction in a state nobody
/// knows, so the whole batch is rolled back and every caller gets the error.
fn commit_batch(conn: &Connection, writes: &mut Vec<Box<dyn WriteJob>>) {
    if let Err(error) = run_cached(conn, "BEGIN IMMEDIATE") {
        tracing::error!(%error, jobs = writes.len(), "cannot begin a write batch");
        let message = error.to_string();
        for job in writes.drain(..) {
            job.report(Err(StoreError::BatchNotStarted(message.clone())));
        }
        return;
    }
    let mut ran = Vec::with_capacity(writes.len());
    let mut jobs = writes.drain(..);
    let mut aborted = None;
    for mut job in jobs.by_ref() {
        if let Err(error) = run_cached(conn, "SAVEPOINT job") {
            aborted = Some(format!("cannot open a savepoint: {error}"));
            ran.push(job);
            break;
        }
        let closed = if job.run(conn) {
            run_cached(conn, "RELEASE job")
        } else {
            run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job"))
        };
        ran.push(job);
        if let Err(error) = closed {
            aborted = Some(format!("cannot close a savepoint: {error}"));
            break;
        }
    }
    // Jobs after an abort never run; they hear of it with the others.
    ran.extend(jobs);
    let failure = match aborted {
        None => match run_cached(conn, "COMMIT") {
            Ok(()) => None,
            Err(error) => Some(BatchFailure::Commit(error.to_string())),
        },
        Some(reason) => Some(BatchFailure::Aborted(reason)),
    };
    if let Some(failure) = failure {
        tracing::error!(%failure, jobs = ran.len(), "a write batch failed; nothing of it commits");
        if let Err(error) = conn.execute_batch("ROLLBACK") {
            tracing::error!(%error, "cannot roll back a failed batch");
        }
        for job in ran {
            job.report(Err(failure.error()));
        }
        return;
    }
    for job in ran {
        job.report(Ok(()));
    }
}

/// Why a whole batch failed, told to each of its callers.
#[derive(Debug)]
enum BatchFailure {
    Aborted(String),
    Commit(String),
}

impl BatchFailure {
    fn error(&self) -> StoreError {
        match self {
            Self::Aborted(reason) => StoreError::BatchAborted(reason.clone()),
            Self::Commit(reason) => StoreError::CommitFailed(reason.clone()),
        }
    }
}

impl std::fmt::Display for BatchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error().fmt(f)
    }
}

/// Statements made to fail on the current thread, to prove what a failure does.
#[cfg(test)]
mod faults {
    use std::cell::RefCell;

    thread_local! {
        static FAILING: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }

    /// Makes every later run of `sql` on this thread fail.
    pub(super) fn fail(sql: &'static str) {
        FAILING.with(|failing| failing.borrow_mut().push(sql));
    }

    pub(super) fn check(sql: &str) -> rusqlite::Result<()> {
        if FAILING.with(|failing| failing.borrow().contains(&sql)) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some(format!("injected failure of {sql}")),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    type Answer = oneshot::Receiver<Result<(), StoreError>>;

    /// A job that inserts `n`; with `fail`, it inserts and then fails.
    fn insert(n: i64, fail: bool) -> (Box<dyn WriteJob>, Answer) {
        let (reply, answer) = oneshot::channel();
        let work = move |conn: &Connection| {
            conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
            if fail {
                return Err(StoreError::ValueOutOfRange("t"));
            }
            Ok(())
        };
        let job = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        (job, answer)
    }

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER NOT NULL)")
            .unwrap();
        conn
    }

    fn stored(conn: &Connection) -> Vec<i64> {
        let mut statement = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs one batch of `jobs` and returns each caller's answer.
    fn batch(conn: &Connection, jobs: Vec<(Box<dyn WriteJob>, Answer)>) -> Vec<Result<(), String>> {
        let (mut writes, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        commit_batch(conn, &mut writes);
        answers
            .into_iter()
            .map(|mut answer| answer.try_recv().unwrap().map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn a_failing_job_is_rolled_back_and_the_others_commit() {
        let conn = table();
        let answers = batch(
            &conn,
            vec![insert(1, false), insert(2, true), insert(3, false)],
        );
        assert!(answers[0].is_ok() && answers[1].is_err() && answers[2].is_ok());
        assert_eq!(stored(&conn), vec![1, 3]);
    }

    #[test]
    fn a_failed_rollback_to_a_savepoint_fails_the_whole_batch() {
        let conn = table();
        faults::fail("ROLLBACK TO job");
        let answers = batch(
            &conn,
            vec![insert(1, false), insert(2, true), insert(3, false)],
        );
        for answer in &answers {
            let error = answer.as_ref().unwrap_err();
            assert!(error.contains("rolled back whole"), "{error}");
        }
        assert!(stored(&conn).is_empty(), "nothing of the batch commits");
        assert!(conn.is_autocommit(), "the transaction is over");
    }

    #[test]
    fn a_failed_savepoint_fails_the_whole_batch() {
        let conn = table();
        faults::fail("SAVEPOINT job");
        let answers = batch(&conn, vec![insert(1, false), insert(2, false)]);
        assert!(answers.iter().all(Result::is_err), "{answers:?}");
        assert!(stored(&conn).is_empty());
    }

    #[test]
    fn a_failed_release_fails_the_whole_batch() {
        let conn = table();
        faults::fail("RELEASE job");
        let answers = batch(&conn, vec![insert(1, false), insert(2, false)]);
        assert!(answers.iter().all(Result::is_err), "{answers:?}");
        assert!(stored(&conn).is_empty());
    }

    #[test]
    fn a_failed_commit_reaches_every_caller() {
        let conn = table();
        faults::fail("COMMIT");
        let answers = batch(&conn, vec![insert(1, false), insert(2, false)]);
        for answer in &answers {
            assert!(answer.as_ref().unwrap_err().contains("commit failed"));
        }
        assert!(stored(&conn).is_empty());
    }
}
