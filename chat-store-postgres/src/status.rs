//! Status changes: delivered and read, by id or for a whole conversation.

use chat_core::{Message, MessageId, MessageStatus, UserId};
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::{PostgresStore, sql};

impl PostgresStore {
    pub(crate) async fn change_status(
        &self,
        receiver: UserId,
        ids: &[MessageId],
        status: MessageStatus,
        at: OffsetDateTime,
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
        let mut changed = self.messages(query).await?;
        changed.sort_unstable_by_key(|m| m.id);
        Ok(changed)
    }

    pub(crate) async fn read_conversation(
        &self,
        receiver: UserId,
        sender: UserId,
        up_to: Option<MessageId>,
        at: OffsetDateTime,
    ) -> Result<Vec<MessageId>, StoreError> {
        let rows = sqlx::query(sql::MARK_READ_UP_TO)
            .bind(at)
            .bind(receiver.get())
            .bind(sender.get())
            .bind(up_to.map_or(i64::MAX, MessageId::get))
            .fetch_all(&self.pool)
            .await?;
        let mut ids = rows
            .iter()
            .map(|row| row.try_get::<i64, _>(0).map(MessageId::new))
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }
}
