//! One user's messages after a cursor, across all of that user's conversations.
//!
//! No index is ordered by "messages of user U": keeping two (by sender and by
//! receiver) cost every insert two more B-tree pages. Instead the user's conversations
//! with activity after the cursor come from `conversations_recent`, and each one's
//! messages from the conversation index, merged here by id. The cost is one index seek
//! per conversation active since the cursor, which for a reconnecting device is a few.

use chat_core::{Message, MessageId, UserId};
use rusqlite::{Connection, params};

use crate::error::StoreError;
use crate::first_by_id::FirstById;
use crate::sql;

/// The first `limit` messages to or from `user` with ids above `after`, ascending.
pub(crate) fn after_for_user(
    conn: &Connection,
    user: UserId,
    after: MessageId,
    limit: usize,
) -> Result<Vec<Message>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One snapshot for the peers and their messages: a message committed in between
    // could otherwise be missed by its conversation yet counted by a later cursor.
    let tx = conn.unchecked_transaction()?;
    let peers: Vec<i64> = tx
        .prepare_cached(sql::PEERS_ACTIVE_AFTER)?
        .query_map(params![user.get(), after.get()], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut first = FirstById::new(limit);
    let mut between = tx.prepare_cached(sql::HISTORY_BETWEEN)?;
    for peer in peers {
        let (low, high) = sql::conversation_key(user, UserId::new(peer));
        first.add(between.query_map(
            params![low, high, after.get(), first.below(), first.sql_limit()],
            sql::message_from_row,
        )?)?;
    }
    drop(between);
    tx.finish()?;
    Ok(first.finish())
}
