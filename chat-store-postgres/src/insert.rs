//! What a send needs beside the group's insert: the holder of a taken idempotency key,
//! and whether a message whose commit lost its answer is stored.

use chat_core::{Message, MessageId, NewMessageRecord};
use sqlx::{Connection, Executor};

use crate::error::StoreError;
use crate::sql;

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

/// Whether message `id` is stored, asked once its participants' locks (`low`, `high`)
/// are free: a transaction still holding them has committed or aborted by then.
pub(crate) async fn stored(
    connection: &mut sqlx::PgConnection,
    id: MessageId,
    (low, high): (i64, i64),
) -> Result<bool, StoreError> {
    let mut tx = connection.begin().await?;
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
