//! Status changes: delivered and read, by id or for a whole conversation, with the
//! jobs they cause in the same transaction.

use chat_core::{Message, MessageId, MessageStatus, NewJob, UserId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::jobs::insert_jobs;
use crate::{PostgresStore, sql};

impl PostgresStore {
    pub(crate) async fn change_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<Message>, StoreError> {
        let statement = match status {
            MessageStatus::Sent => return Ok(Vec::new()),
            MessageStatus::Delivered => sql::MARK_DELIVERED,
            MessageStatus::Read => sql::MARK_READ,
        };
        let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let query = sqlx::query(statement)
            .bind(at)
            .bind(ids)
            .bind(receiver.get());
        let mut changed = if jobs.is_empty() {
            self.messages(query).await?
        } else {
            // The change and its jobs in one transaction.
            let mut tx = self.pool.begin().await?;
            let rows = query.fetch_all(&mut *tx).await?;
            let changed = rows
                .iter()
                .map(sql::message_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let copies = copies(jobs, changed.iter().map(|message| message.id));
            if !copies.is_empty() {
                insert_jobs(&mut *tx, &copies, None, at).await?;
            }
            tx.commit().await?;
            changed
        };
        changed.sort_unstable_by_key(|m| m.id);
        Ok(changed)
    }

    pub(crate) async fn read_conversation(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
        jobs: &[NewJob],
    ) -> Result<Vec<MessageId>, StoreError> {
        let query = sqlx::query(sql::MARK_READ_UP_TO)
            .bind(at)
            .bind(receiver.get())
            .bind(sender.get())
            .bind(up_to.map_or(i64::MAX, MessageId::get));
        let read = |rows: Vec<PgRow>| {
            rows.iter()
                .map(|row| row.try_get::<i64, _>(0).map(MessageId::new))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut ids = if jobs.is_empty() {
            read(query.fetch_all(&self.pool).await?)?
        } else {
            let mut tx = self.pool.begin().await?;
            let ids = read(query.fetch_all(&mut *tx).await?)?;
            let copies = copies(jobs, ids.iter().copied());
            if !copies.is_empty() {
                insert_jobs(&mut *tx, &copies, None, at).await?;
            }
            tx.commit().await?;
            ids
        };
        ids.sort_unstable();
        Ok(ids)
    }
}

/// A copy of each of `jobs` for each message of `changed`, naming it.
fn copies(jobs: &[NewJob], changed: impl Iterator<Item = MessageId>) -> Vec<NewJob> {
    changed
        .flat_map(|id| {
            jobs.iter().map(move |job| NewJob {
                subject: Some(id),
                ..job.clone()
            })
        })
        .collect()
}
