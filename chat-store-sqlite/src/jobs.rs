//! The job outbox: enqueued in the writer's batches, claimed through the single
//! writer (so two claims never overlap), read by the readers.

use std::time::Duration;

use chat_core::timestamp::to_unix_micros;
use chat_core::{Claimed, Job, JobId, JobState, MessageId, NewJob, Outcome};
use rusqlite::{Connection, Row, params};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::sql::time_at;

const COLUMNS: &str = "id, kind, subject, payload, state, attempts, due_at, created_at, last_error";

fn state_code(state: JobState) -> i64 {
    match state {
        JobState::Pending => 0,
        JobState::Running => 1,
        _ => 2,
    }
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let state = match row.get::<_, i64>(4)? {
        0 => JobState::Pending,
        1 => JobState::Running,
        _ => JobState::Dead,
    };
    Ok(Job {
        id: JobId::new(row.get(0)?),
        kind: row.get(1)?,
        subject: row.get::<_, Option<i64>>(2)?.map(MessageId::new),
        payload: row.get(3)?,
        state,
        attempts: u32::try_from(row.get::<_, i64>(5)?).unwrap_or(u32::MAX),
        due_at: time_at(row, 6)?,
        created_at: time_at(row, 7)?,
        last_error: row.get(8)?,
    })
}

/// Enqueues `jobs` at `now`; with `subject`, each names it instead of its own.
pub(crate) fn enqueue(
    conn: &Connection,
    jobs: &[NewJob],
    subject: Option<MessageId>,
    now: OffsetDateTime,
) -> Result<Vec<JobId>, StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO jobs (kind, subject, payload, due_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    )?;
    let created = to_unix_micros(now);
    jobs.iter()
        .map(|job| {
            let id: i64 = insert.query_row(
                params![
                    job.kind,
                    subject.or(job.subject).map(MessageId::get),
                    job.payload,
                    to_unix_micros(job.due_at),
                    created
                ],
                |row| row.get(0),
            )?;
            Ok(JobId::new(id))
        })
        .collect()
}

pub(crate) fn claim(
    conn: &Connection,
    now: OffsetDateTime,
    lease: Duration,
    limit: u32,
) -> Result<Vec<Claimed>, StoreError> {
    let now_micros = to_unix_micros(now);
    let until = now + lease;
    // Two index ranges, each already in order, merged here: one `OR` query would sort
    // every due job on each claim.
    let mut due: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT due_at, id FROM jobs WHERE state = 0 AND due_at <= ?1 \
             ORDER BY due_at, id LIMIT ?2",
        )?
        .query_map(params![now_micros, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let expired = conn
        .prepare_cached(
            "SELECT due_at, id FROM jobs WHERE state = 1 AND lease_until <= ?1 \
             ORDER BY lease_until LIMIT ?2",
        )?
        .query_map(params![now_micros, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    due.extend(expired);
    due.sort_unstable();
    due.truncate(limit as usize);
    let mut take = conn.prepare_cached(&format!(
        "UPDATE jobs SET state = 1, attempts = attempts + 1, lease_until = ?2 WHERE id = ?1 \
         RETURNING {COLUMNS}"
    ))?;
    let mut claimed = Vec::with_capacity(due.len());
    for (_, id) in due {
        let job = take.query_row(params![id, to_unix_micros(until)], job_from_row)?;
        claimed.push(Claimed {
            lease: u64::from(job.attempts),
            lease_until: until,
            job,
        });
    }
    Ok(claimed)
}

pub(crate) fn finish(
    conn: &Connection,
    id: JobId,
    lease: u64,
    outcome: &Outcome,
) -> Result<bool, StoreError> {
    let Ok(attempt) = i64::try_from(lease) else {
        return Ok(false);
    };
    let changed = match outcome {
        Outcome::Succeeded => conn
            .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND state = 1 AND attempts = ?2")?
            .execute(params![id.get(), attempt])?,
        Outcome::Failed { error, retry_at } => {
            let (state, due) = match retry_at {
                Some(at) => (0, Some(to_unix_micros(*at))),
                None => (2, None),
            };
            conn.prepare_cached(
                "UPDATE jobs SET state = ?3, due_at = COALESCE(?4, due_at), last_error = ?5, \
                 lease_until = NULL WHERE id = ?1 AND state = 1 AND attempts = ?2",
            )?
            .execute(params![id.get(), attempt, state, due, error])?
        }
    };
    Ok(changed == 1)
}

pub(crate) fn list(conn: &Connection, state: JobState, limit: u32) -> Result<Vec<Job>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = ?1 ORDER BY created_at, id LIMIT ?2"
        ))?
        .query_map(params![state_code(state), limit], job_from_row)?
        .collect::<Result<_, _>>()?)
}

pub(crate) fn retry(conn: &Connection, id: JobId, now: OffsetDateTime) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached("UPDATE jobs SET state = 0, due_at = ?2 WHERE id = ?1 AND state = 2")?
        .execute(params![id.get(), to_unix_micros(now)])?;
    Ok(changed == 1)
}

pub(crate) fn discard(conn: &Connection, id: JobId) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND state <> 1")?
        .execute(params![id.get()])?;
    Ok(changed == 1)
}
