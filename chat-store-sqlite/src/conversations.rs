//! The conversation list and the unread total.

use chat_core::{ConversationSummary, MessageId, UserId};
use rusqlite::{Connection, params};

use crate::error::StoreError;
use crate::sql;

/// At most `limit` of `user`'s conversations with a last message below `before`.
pub(crate) fn list(
    conn: &Connection,
    user: UserId,
    before: Option<MessageId>,
    limit: u32,
) -> Result<Vec<ConversationSummary>, StoreError> {
    let before = before.map_or(i64::MAX, MessageId::get);
    let mut stmt = conn.prepare_cached(sql::CONVERSATIONS)?;
    let rows = stmt.query_map(
        params![user.get(), before, i64::from(limit)],
        sql::conversation_from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Messages to `user` not yet read.
pub(crate) fn unread_total(conn: &Connection, user: UserId) -> Result<u64, StoreError> {
    let total: i64 = conn
        .prepare_cached(sql::UNREAD_TOTAL)?
        .query_row([user.get()], |row| row.get(0))?;
    Ok(sql::count(total))
}
