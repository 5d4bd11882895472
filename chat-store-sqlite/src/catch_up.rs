//! One user's feed after a cursor, across all of that user's conversations: new
//! messages at their ids and changes (edits, deletions) at their revisions.
//!
//! No index is ordered by "messages of user U": keeping two (by sender and by
//! receiver) cost every insert two more B-tree pages. Instead the user's conversations
//! with activity after the cursor come from `conversations_recent`, and each one's
//! messages from the conversation index, merged here by id. The cost is one index seek
//! per conversation active since the cursor, which for a reconnecting device is a few.
//! Changes come the same way from `conversations_changed` and `messages_changes`: one
//! more seek, which finds nothing unless something was edited or deleted since.

use chat_core::{Change, FeedEntry, MessageId, UserId};
use rusqlite::{Connection, params};

use crate::error::StoreError;
use crate::first_by_id::FirstById;
use crate::sql;

/// The first `limit` entries of `user`'s feed after position `after`, ascending.
pub(crate) fn feed_after(
    conn: &Connection,
    user: UserId,
    after: MessageId,
    limit: usize,
) -> Result<Vec<FeedEntry>, StoreError> {
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
    let changes = changes_after(&tx, user, after, limit)?;
    tx.finish()?;
    let new = first.finish();
    if changes.is_empty() {
        return Ok(new.into_iter().map(FeedEntry::New).collect());
    }
    let mut entries: Vec<FeedEntry> = new
        .into_iter()
        .map(FeedEntry::New)
        .chain(changes.into_iter().map(FeedEntry::Changed))
        .collect();
    // Stable: a message both new and changed keeps its new entry first.
    entries.sort_by_key(FeedEntry::position);
    entries.truncate(limit);
    Ok(entries)
}

/// The first `limit` changes of `user`'s conversations with revisions above `after`.
fn changes_after(
    conn: &Connection,
    user: UserId,
    after: MessageId,
    limit: usize,
) -> Result<Vec<Change>, StoreError> {
    let peers: Vec<i64> = conn
        .prepare_cached(sql::PEERS_CHANGED_AFTER)?
        .query_map(params![user.get(), after.get()], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut changes = Vec::new();
    if peers.is_empty() {
        return Ok(changes);
    }
    let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut changed = conn.prepare_cached(sql::CHANGES_AFTER)?;
    for peer in peers {
        let (low, high) = sql::conversation_key(user, UserId::new(peer));
        let rows = changed.query_map(params![low, high, after.get(), sql_limit], |row| {
            Ok(Change {
                message: sql::message_from_row(row)?,
                revision: MessageId::new(row.get(12)?),
            })
        })?;
        for change in rows {
            changes.push(change?);
        }
    }
    changes.sort_unstable_by_key(|change| change.revision);
    changes.truncate(limit);
    Ok(changes)
}
