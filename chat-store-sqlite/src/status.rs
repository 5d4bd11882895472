//! Delivery and read receipts, and the counts they keep on the conversation rows.
//!
//! Every status change takes what it changed off the receiver's conversation row
//! (`unread_count`, `undelivered_count`) in the same transaction, and moves the row's
//! floors (`read_floor`, `delivery_floor`) when it can prove every message below them
//! is read or delivered. Inserts only add to the counts, so no per-user index of
//! unread or undelivered messages is written on the send path.

use std::collections::BTreeMap;

use chat_core::timestamp::to_unix_micros;
use chat_core::{Message, MessageId, MessageStatus, UserId};
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::sql;

/// What a status change did to one conversation (messages from one sender).
#[derive(Default)]
struct Changed {
    read: i64,
    delivered: i64,
    /// Every message from the sender below this id is now read (and so delivered).
    read_below: i64,
}

/// Moves the listed messages to `receiver` forward to `status`; returns those that moved.
pub(crate) fn set(
    conn: &Connection,
    receiver: UserId,
    mut ids: Vec<MessageId>,
    status: MessageStatus,
    at: OffsetDateTime,
) -> Result<Vec<Message>, StoreError> {
    let statement = match status {
        MessageStatus::Sent => return Ok(Vec::new()),
        MessageStatus::Delivered => sql::MARK_DELIVERED,
        MessageStatus::Read => sql::MARK_READ,
    };
    ids.sort_unstable();
    ids.dedup();
    let at = to_unix_micros(at);
    let mut before = conn.prepare_cached(sql::STATUS_OF)?;
    let mut update = conn.prepare_cached(statement)?;
    let mut changed = Vec::new();
    let mut by_sender: BTreeMap<i64, Changed> = BTreeMap::new();
    for id in ids {
        let Some((sender, was)) = before
            .query_row(params![id.get(), receiver.get()], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?
        else {
            continue;
        };
        let Some(message) = update
            .query_row(params![at, id.get(), receiver.get()], sql::message_from_row)
            .optional()?
        else {
            continue;
        };
        let counts = by_sender.entry(sender).or_default();
        if was == "sent" {
            counts.delivered += 1;
        }
        if message.status == MessageStatus::Read {
            counts.read += 1;
        }
        changed.push(message);
    }
    for (sender, counts) in by_sender {
        count(conn, receiver.get(), sender, &counts)?;
    }
    Ok(changed)
}

/// Reads every message from `sender` to `receiver` up to `up_to`; returns their ids,
/// ascending.
pub(crate) fn mark_conversation_read(
    conn: &Connection,
    receiver: UserId,
    sender: UserId,
    up_to: i64,
    at: OffsetDateTime,
) -> Result<Vec<MessageId>, StoreError> {
    let position: Option<(i64, i64)> = conn
        .prepare_cached(sql::READ_POSITION)?
        .query_row(params![receiver.get(), sender.get()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    // No conversation row: they never wrote to each other.
    let Some((floor, last)) = position else {
        return Ok(Vec::new());
    };
    // Ids above the newest message do not exist yet, and will be larger when they do.
    let up_to = up_to.min(last);
    if up_to < floor {
        return Ok(Vec::new());
    }
    let (low, high) = sql::conversation_key(receiver, sender);
    let delivered: i64 = conn
        .prepare_cached(sql::SENT_UP_TO)?
        .query_row(params![low, high, receiver.get(), floor, up_to], |row| {
            row.get(0)
        })?;
    let mut ids: Vec<MessageId> = conn
        .prepare_cached(sql::MARK_READ_UP_TO)?
        .query_map(
            params![to_unix_micros(at), low, high, receiver.get(), floor, up_to],
            |row| row.get::<_, i64>(0).map(MessageId::new),
        )?
        .collect::<Result<_, _>>()?;
    ids.sort_unstable();
    let counts = Changed {
        read: i64::try_from(ids.len()).unwrap_or(i64::MAX),
        delivered,
        read_below: up_to + 1,
    };
    count(conn, receiver.get(), sender.get(), &counts)?;
    Ok(ids)
}

fn count(
    conn: &Connection,
    receiver: i64,
    sender: i64,
    changed: &Changed,
) -> Result<(), StoreError> {
    conn.prepare_cached(sql::COUNT_STATUS_CHANGES)?
        .execute(params![
            receiver,
            sender,
            changed.read,
            changed.read_below,
            changed.delivered,
            changed.read_below,
        ])?;
    Ok(())
}
