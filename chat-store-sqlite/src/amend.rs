//! Edits and deletions: the row changes in place under a revision drawn from the id
//! sequence, and both participants' conversation rows remember their newest change.

use chat_core::timestamp::to_unix_micros;
use chat_core::{Amendment, Change, MessageId, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::sql;

/// Edits or deletes message `id` of `sender`, unless it is not theirs or is deleted.
pub(crate) fn amend(
    conn: &Connection,
    sender: UserId,
    id: MessageId,
    amendment: Amendment,
    at: OffsetDateTime,
) -> Result<Option<Change>, StoreError> {
    let receiver: Option<i64> = conn
        .prepare_cached(sql::AMENDABLE)?
        .query_row(params![id.get(), sender.get()], |row| row.get(0))
        .optional()?;
    let Some(receiver) = receiver else {
        return Ok(None);
    };
    // The single writer commits in order, so numbers drawn here ascend in commit order
    // with the ids of messages inserted around them.
    let revision: i64 = conn
        .prepare_cached(sql::NEXT_POSITION)?
        .query_row([], |row| row.get(0))?;
    let at = to_unix_micros(at);
    let (statement, text) = match amendment {
        Amendment::Edit(text) => (sql::EDIT, text),
        Amendment::Delete => (sql::DELETE, String::new()),
    };
    let message = conn
        .prepare_cached(statement)?
        .query_row(params![text, at, revision, id.get()], sql::message_from_row)?;
    conn.prepare_cached(sql::TOUCH_CHANGED)?
        .execute(params![sender.get(), receiver, revision])?;
    Ok(Some(Change {
        revision: MessageId::new(revision),
        message,
    }))
}
