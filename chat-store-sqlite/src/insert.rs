//! Storing a message: the row, its conversations' counters, the idempotency key, and
//! the jobs it causes.

use chat_core::timestamp::to_unix_micros;
use chat_core::{Inserted, MessageId, NewMessageRecord};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::{jobs, sql};

/// Stores `record`, or returns the message already holding its idempotency key;
/// `checked` when either participant takes part in a block, so the blocks table must
/// be asked (`StoreError::Blocked` when one stands between them).
pub(crate) fn insert(
    conn: &Connection,
    mut record: NewMessageRecord,
    checked: bool,
) -> Result<Inserted, StoreError> {
    let sender = record.sender_id.get();
    let receiver = record.receiver_id.get();
    let statement = if checked {
        sql::INSERT_UNLESS_BLOCKED
    } else {
        sql::INSERT
    };
    let id: Option<i64> = conn
        .prepare_cached(statement)?
        .query_row(
            params![
                sender,
                receiver,
                record.message,
                record.client_message_id,
                to_unix_micros(record.created_at)
            ],
            |row| row.get(0),
        )
        .optional()?;
    match id {
        Some(id) => {
            conn.prepare_cached(sql::TOUCH_CONVERSATIONS)?
                .execute(params![sender, receiver, id])?;
            // In the same savepoint as the message: both or neither.
            if !record.jobs.is_empty() {
                let jobs = std::mem::take(&mut record.jobs);
                jobs::enqueue(conn, &jobs, Some(MessageId::new(id)), record.created_at)?;
            }
            Ok(Inserted {
                message: record.into_message(MessageId::new(id)),
                created: true,
            })
        }
        // The idempotency key is taken (return its holder), or a block refused it.
        None => {
            let existing = match &record.client_message_id {
                Some(key) => conn
                    .prepare_cached(sql::BY_CLIENT_ID)?
                    .query_row(params![sender, key], sql::message_from_row)
                    .optional()?,
                None => None,
            };
            match existing {
                Some(message) => Ok(Inserted {
                    message,
                    created: false,
                }),
                None => Err(StoreError::Blocked),
            }
        }
    }
}
