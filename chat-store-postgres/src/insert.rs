//! Storing a message: participant locks, the idempotency key, the jobs it causes,
//! and a commit whose answer was lost.

use chat_core::{Inserted, Message, MessageId, NewMessageRecord};
use sqlx::Executor;

use crate::error::StoreError;
use crate::jobs::insert_jobs;
use crate::{PostgresStore, RESOLUTION_ATTEMPTS, sql};

/// The message already stored under `record`'s idempotency key, if it has one and it is
/// taken: what a send that stored nothing answers (none: a block refused it).
pub(crate) async fn key_holder(
    tx: &mut sqlx::PgConnection,
    record: &NewMessageRecord,
) -> Result<Option<Message>, StoreError> {
    let Some(key) = &record.client_message_id else {
        return Ok(None);
    };
    let row = sqlx::query(sql::BY_CLIENT_ID)
        .bind(record.sender_id.get())
        .bind(key)
        .fetch_optional(tx)
        .await?;
    Ok(row.as_ref().map(sql::message_from_row).transpose()?)
}

impl PostgresStore {
    pub(crate) async fn insert_message(
        &self,
        mut record: NewMessageRecord,
    ) -> Result<Inserted, StoreError> {
        let (low, high) = sql::conversation_key(record.sender_id, record.receiver_id);
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::LOCK_PARTICIPANTS)
            .bind(low)
            .bind(high)
            .execute(&mut *tx)
            .await?;
        let id: Option<i64> = sqlx::query_scalar(sql::INSERT)
            .bind(record.sender_id.get())
            .bind(record.receiver_id.get())
            .bind(&record.message)
            .bind(&record.client_message_id)
            .bind(record.created_at)
            .fetch_optional(&mut *tx)
            .await?;
        let inserted = match id {
            Some(id) => {
                let id = MessageId::new(id);
                // In the same transaction as the message: both or neither. No round
                // trip when there are none (no webhooks configured).
                if !record.jobs.is_empty() {
                    let jobs = std::mem::take(&mut record.jobs);
                    insert_jobs(&mut *tx, &jobs, Some(id), record.created_at).await?;
                }
                Inserted {
                    message: record.into_message(id),
                    created: true,
                }
            }
            // The idempotency key is taken (return its holder), or a block refused it.
            None => {
                let Some(holder) = key_holder(&mut tx, &record).await? else {
                    return Err(StoreError::Blocked);
                };
                Inserted {
                    message: holder,
                    created: false,
                }
            }
        };
        match tx.commit().await.map_err(StoreError::from) {
            Ok(()) => Ok(inserted),
            Err(lost) if lost.is_unavailable() => {
                self.resolve_lost_commit(inserted, (low, high), lost).await
            }
            Err(other) => Err(other),
        }
    }

    /// Decides an insert whose `COMMIT` failed with a lost connection. The commit may
    /// have reached Postgres and succeeded with only its answer lost, so `Unavailable`
    /// (a 503 the client retries after) could stand for a stored message. A fresh
    /// transaction takes the same participant locks, which the broken transaction holds
    /// until it has committed or aborted, then looks the new id up: stored means
    /// committed. Replays wrote nothing, so their answer stands either way. If the
    /// question cannot be answered (the database is still out of reach, or the old
    /// backend keeps its locks past the lock timeout), the original error stands.
    pub(crate) async fn resolve_lost_commit(
        &self,
        inserted: Inserted,
        (low, high): (i64, i64),
        lost: StoreError,
    ) -> Result<Inserted, StoreError> {
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
