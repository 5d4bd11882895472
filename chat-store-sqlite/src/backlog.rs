//! The undelivered backlog of one receiver, across their conversations.
//!
//! There is no index of "messages to U still sent" (it would cost every insert one
//! more B-tree page). The receiver's conversation rows count their undelivered
//! messages and say where the oldest may be (`delivery_floor`); the backlog reads
//! each such conversation's messages from there and merges them by id.

use chat_core::{Message, MessageId, UserId};
use rusqlite::{Connection, params};

use crate::error::StoreError;
use crate::first_by_id::FirstById;
use crate::sql;

/// The first `limit` messages to `receiver` still `sent` with ids above `after`,
/// ascending.
pub(crate) fn undelivered(
    conn: &Connection,
    receiver: UserId,
    after: MessageId,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One snapshot for the counts and the messages they count.
    let tx = conn.unchecked_transaction()?;
    let peers: Vec<(i64, i64)> = tx
        .prepare_cached(sql::PEERS_WITH_UNDELIVERED)?
        .query_map([receiver.get()], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut first = FirstById::new(limit);
    let mut stmt = tx.prepare_cached(sql::UNDELIVERED_FROM)?;
    for (peer, floor) in peers {
        let (low, high) = sql::conversation_key(receiver, UserId::new(peer));
        let from = floor.max(after.get().saturating_add(1));
        first.add(stmt.query_map(
            params![
                low,
                high,
                receiver.get(),
                from,
                first.below(),
                first.sql_limit()
            ],
            sql::message_from_row,
        )?)?;
    }
    drop(stmt);
    tx.finish()?;
    Ok(first.finish())
}
