//! Reading messages: one by id, and the history of a conversation.

use chat_core::{HistoryPage, Message, MessageId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::sql;

/// The message `id`, if any.
pub(crate) fn get(conn: &Connection, id: MessageId) -> Result<Option<Message>, StoreError> {
    Ok(conn
        .prepare_cached(sql::GET)?
        .query_row([id.get()], sql::message_from_row)
        .optional()?)
}

/// The messages a statement selects, row by row.
pub(crate) fn collect_messages(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Message>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, sql::message_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A page of the conversation between `a` and `b`, newest first, with its total.
pub(crate) fn page(
    conn: &Connection,
    (a, b): (UserId, UserId),
    offset: u64,
    limit: u32,
) -> Result<HistoryPage, StoreError> {
    let (low, high) = sql::conversation_key(a, b);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    // One snapshot for the page and its total.
    let tx = conn.unchecked_transaction()?;
    let total: i64 = tx
        .prepare_cached(sql::CONVERSATION_TOTAL)?
        .query_row([low, high], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let messages = collect_messages(
        &tx,
        sql::HISTORY_PAGE,
        params![low, high, i64::from(limit), offset],
    )?;
    tx.finish()?;
    Ok(HistoryPage {
        messages,
        total: u64::try_from(total).map_err(|_| StoreError::ValueOutOfRange("message_count"))?,
    })
}

/// Messages between `a` and `b` on one side of `bound` (`HISTORY_BEFORE`, newest
/// first, or `HISTORY_AFTER`, oldest first).
pub(crate) fn slice(
    conn: &Connection,
    statement: &str,
    (a, b): (UserId, UserId),
    bound: i64,
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let (low, high) = sql::conversation_key(a, b);
    collect_messages(conn, statement, params![low, high, bound, i64::from(limit)])
}
