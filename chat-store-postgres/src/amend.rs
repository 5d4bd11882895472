//! Edits and deletions: the row changes in place under a revision drawn from the id
//! sequence while both participants' locks are held, as an insert draws its id.

use chat_core::{Amendment, Change, MessageId, UserId};
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::{PostgresStore, sql};

impl PostgresStore {
    pub(crate) async fn amend_message(
        &self,
        sender: UserId,
        id: MessageId,
        amendment: Amendment,
        at: OffsetDateTime,
    ) -> Result<Option<Change>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let receiver: Option<i64> = sqlx::query_scalar(sql::AMENDABLE)
            .bind(id.get())
            .bind(sender.get())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(receiver) = receiver else {
            return Ok(None);
        };
        let (low, high) = sql::conversation_key(sender, UserId::new(receiver));
        sqlx::query(sql::LOCK_PARTICIPANTS)
            .bind(low)
            .bind(high)
            .execute(&mut *tx)
            .await?;
        let (statement, text) = match amendment {
            Amendment::Edit(text) => (sql::EDIT, text),
            Amendment::Delete => (sql::DELETE, String::new()),
        };
        // Checked again under the locks: another device may have deleted it.
        let row = sqlx::query(statement)
            .bind(text)
            .bind(at)
            .bind(id.get())
            .bind(sender.get())
            .fetch_optional(&mut *tx)
            .await?;
        let change = row
            .map(|row| -> Result<Change, sqlx::Error> {
                Ok(Change {
                    revision: MessageId::new(row.try_get("revision")?),
                    message: sql::message_from_row(&row)?,
                })
            })
            .transpose()?;
        tx.commit().await?;
        Ok(change)
    }
}
