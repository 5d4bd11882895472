//! The job outbox. Several nodes claim from it at once: `FOR UPDATE SKIP LOCKED`
//! hands each job to one of them, and a job whose lease ended is taken over.

use std::time::Duration;

use chat_core::{Claimed, Job, JobId, JobState, MessageId, NewJob, Outcome};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::PostgresStore;
use crate::error::StoreError;

const COLUMNS: &str = "id, kind, subject, payload, state, attempts, due_at, created_at, last_error";

/// Pending jobs due and running ones whose lease ended, each from its own index range
/// already in order (one `OR` would sort every due job on each claim), merged, and the
/// oldest due taken. Rows locked by another claim are skipped.
const CLAIM: &str = "WITH pending AS ( \
       SELECT id, due_at FROM jobs WHERE state = 'pending' AND due_at <= $1 \
        ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
     expired AS ( \
       SELECT id, due_at FROM jobs WHERE state = 'running' AND lease_until <= $1 \
        ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED), \
     due AS ( \
       SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS candidates \
        ORDER BY due_at, id LIMIT $2) \
     UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1, lease_until = $3 \
       FROM due WHERE jobs.id = due.id \
     RETURNING jobs.id, jobs.kind, jobs.subject, jobs.payload, jobs.state, jobs.attempts, jobs.due_at, \
       jobs.created_at, jobs.last_error";

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        _ => "dead",
    }
}

fn job_from_row(row: &PgRow) -> Result<Job, sqlx::Error> {
    let state = match row.try_get::<String, _>("state")?.as_str() {
        "pending" => JobState::Pending,
        "running" => JobState::Running,
        _ => JobState::Dead,
    };
    Ok(Job {
        id: JobId::new(row.try_get("id")?),
        kind: row.try_get("kind")?,
        subject: row
            .try_get::<Option<i64>, _>("subject")?
            .map(MessageId::new),
        payload: row.try_get("payload")?,
        state,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
        due_at: row.try_get("due_at")?,
        created_at: row.try_get("created_at")?,
        last_error: row.try_get("last_error")?,
    })
}

/// Enqueues `jobs` at `now` through `executor` (a transaction, to write them with
/// the change that causes them); with `subject`, each names it instead of its own.
pub(crate) async fn insert_jobs<'e, E>(
    executor: E,
    jobs: &[NewJob],
    subject: Option<MessageId>,
    now: OffsetDateTime,
) -> Result<Vec<JobId>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let kinds: Vec<String> = jobs.iter().map(|job| job.kind.clone()).collect();
    let subjects: Vec<Option<i64>> = jobs
        .iter()
        .map(|job| subject.or(job.subject).map(MessageId::get))
        .collect();
    let payloads: Vec<String> = jobs.iter().map(|job| job.payload.clone()).collect();
    let due: Vec<OffsetDateTime> = jobs.iter().map(|job| job.due_at).collect();
    // One statement, so all of them or none; ids in the order given.
    let rows = sqlx::query(
            "INSERT INTO jobs (kind, subject, payload, due_at, created_at) \
             SELECT kind, subject, payload, due_at, $5 \
               FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TIMESTAMPTZ[]) WITH ORDINALITY \
                    AS j(kind, subject, payload, due_at, n) ORDER BY n \
             RETURNING id",
        )
        .bind(kinds)
        .bind(subjects)
        .bind(payloads)
        .bind(due)
        .bind(now)
        .fetch_all(executor)
        .await?;
    let mut ids: Vec<JobId> = rows
        .iter()
        .map(|row| row.try_get::<i64, _>("id").map(JobId::new))
        .collect::<Result<_, _>>()?;
    // Identity values follow the insertion order.
    ids.sort();
    Ok(ids)
}

impl PostgresStore {
    pub(crate) async fn enqueue_jobs(
        &self,
        jobs: Vec<NewJob>,
        now: OffsetDateTime,
    ) -> Result<Vec<JobId>, StoreError> {
        insert_jobs(&self.pool, &jobs, None, now).await
    }

    pub(crate) async fn claim_jobs(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        let until = now + lease;
        let rows = sqlx::query(CLAIM)
            .bind(now)
            .bind(i64::from(limit))
            .bind(until)
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                job_from_row(row).map(|job| Claimed {
                    lease: u64::from(job.attempts),
                    lease_until: until,
                    job,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|c| (c.job.due_at, c.job.id));
        Ok(claimed)
    }

    pub(crate) async fn finish_job(
        &self,
        id: JobId,
        lease: u64,
        outcome: Outcome,
    ) -> Result<bool, StoreError> {
        let Ok(attempt) = i32::try_from(lease) else {
            return Ok(false);
        };
        let result = match outcome {
            Outcome::Succeeded => {
                sqlx::query(
                    "DELETE FROM jobs WHERE id = $1 AND state = 'running' AND attempts = $2",
                )
                .bind(id.get())
                .bind(attempt)
                .execute(&self.pool)
                .await?
            }
            Outcome::Failed { error, retry_at } => {
                let state = if retry_at.is_some() {
                    "pending"
                } else {
                    "dead"
                };
                sqlx::query(
                    "UPDATE jobs SET state = $3, due_at = COALESCE($4, due_at), last_error = $5, \
                     lease_until = NULL WHERE id = $1 AND state = 'running' AND attempts = $2",
                )
                .bind(id.get())
                .bind(attempt)
                .bind(state)
                .bind(retry_at)
                .bind(error)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn list_jobs(
        &self,
        state: JobState,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM jobs WHERE state = $1 ORDER BY created_at, id LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state_name(state))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    pub(crate) async fn retry_job(
        &self,
        id: JobId,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE jobs SET state = 'pending', due_at = $2 WHERE id = $1 AND state = 'dead'",
        )
        .bind(id.get())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn discard_job(&self, id: JobId) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state <> 'running'")
            .bind(id.get())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}
