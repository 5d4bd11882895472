//! Every statement the store runs, and the mapping from rows to messages.

use chat_core::{ConversationSummary, Message, MessageId, MessageStatus, UserId, timestamp};
use rusqlite::Row;
use rusqlite::types::{FromSqlError, Type};

/// The columns of [`message_from_row`], in order.
macro_rules! message_columns {
    () => {
        "id, sender_id, receiver_id, message, status, client_message_id, \
         created_at, updated_at, delivered_at, read_at, edited_at, deleted_at"
    };
}

/// Inserts unless the idempotency key is taken: for two users neither of whom takes
/// part in any block.
pub(crate) const INSERT: &str = "INSERT INTO messages \
     (sender_id, receiver_id, message, client_message_id, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING RETURNING id";

/// Inserts unless the idempotency key is taken or a block stands between the two
/// (two primary-key probes, cheaper than one `OR`).
pub(crate) const INSERT_UNLESS_BLOCKED: &str = "INSERT INTO messages \
     (sender_id, receiver_id, message, client_message_id, created_at, updated_at) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?5 \
     WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2) \
       AND NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = ?2 AND blocked_id = ?1) \
     ON CONFLICT DO NOTHING RETURNING id";

/// Everyone who blocks or is blocked.
pub(crate) const USERS_IN_BLOCKS: &str =
    "SELECT blocker_id FROM blocks UNION SELECT blocked_id FROM blocks";

/// A block between `?1` and `?2`, either way.
pub(crate) const BLOCKED_BETWEEN: &str = "SELECT 1 FROM blocks \
     WHERE (blocker_id = ?1 AND blocked_id = ?2) OR (blocker_id = ?2 AND blocked_id = ?1)";

pub(crate) const BLOCK: &str = "INSERT INTO blocks (blocker_id, blocked_id, created_at) \
     VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

pub(crate) const BLOCK_TIME: &str =
    "SELECT created_at FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2";

pub(crate) const UNBLOCK: &str = "DELETE FROM blocks WHERE blocker_id = ?1 AND blocked_id = ?2";

pub(crate) const BLOCKS: &str = "SELECT blocked_id, created_at FROM blocks \
     WHERE blocker_id = ?1 ORDER BY created_at DESC, blocked_id DESC";

pub(crate) const SET_LAST_SEEN: &str = "INSERT INTO last_seen (user_id, seen_at) VALUES (?1, ?2) \
     ON CONFLICT (user_id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)";

pub(crate) const LAST_SEEN: &str = "SELECT seen_at FROM last_seen WHERE user_id = ?1";

pub(crate) const BY_CLIENT_ID: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE sender_id = ?1 AND client_message_id = ?2"
);

/// Both participants' conversation rows: the newest message, one more message, and
/// one more unread and undelivered for the receiver.
pub(crate) const TOUCH_CONVERSATIONS: &str = "INSERT INTO conversations \
     (user_id, peer_id, last_message_id, message_count, unread_count, undelivered_count) \
     VALUES (?1, ?2, ?3, 1, 0, 0), (?2, ?1, ?3, 1, 1, 1) \
     ON CONFLICT (user_id, peer_id) DO UPDATE SET \
     last_message_id = excluded.last_message_id, message_count = message_count + 1, \
     unread_count = unread_count + excluded.unread_count, \
     undelivered_count = undelivered_count + excluded.undelivered_count";

/// Where "mark read up to" starts in a conversation, and its newest message.
pub(crate) const READ_POSITION: &str =
    "SELECT read_floor, last_message_id FROM conversations WHERE user_id = ?1 AND peer_id = ?2";

/// Of the messages from `?2` to `?1`, `?3` were just read and `?5` just left `sent`;
/// every one below `?4` is now read and every one below `?6` delivered. A count that
/// reaches zero moves its floor past the newest message.
pub(crate) const COUNT_STATUS_CHANGES: &str = "UPDATE conversations SET \
     unread_count = unread_count - ?3, \
     read_floor = max(read_floor, ?4, \
        CASE WHEN unread_count = ?3 THEN last_message_id + 1 ELSE 0 END), \
     undelivered_count = undelivered_count - ?5, \
     delivery_floor = max(delivery_floor, ?6, \
        CASE WHEN undelivered_count = ?5 THEN last_message_id + 1 ELSE 0 END) \
     WHERE user_id = ?1 AND peer_id = ?2";

/// The sender and status of a message to `?2`.
pub(crate) const STATUS_OF: &str =
    "SELECT sender_id, status FROM messages WHERE id = ?1 AND receiver_id = ?2";

pub(crate) const GET: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE id = ?1"
);

pub(crate) const HISTORY_PAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = ?1 AND high_user_id = ?2 \
     ORDER BY id DESC LIMIT ?3 OFFSET ?4"
);

pub(crate) const CONVERSATION_TOTAL: &str =
    "SELECT message_count FROM conversations WHERE user_id = ?1 AND peer_id = ?2";

pub(crate) const HISTORY_BEFORE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = ?1 AND high_user_id = ?2 AND id < ?3 \
     ORDER BY id DESC LIMIT ?4"
);

pub(crate) const HISTORY_AFTER: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = ?1 AND high_user_id = ?2 AND id > ?3 \
     ORDER BY id ASC LIMIT ?4"
);

pub(crate) const MARK_DELIVERED: &str = concat!(
    "UPDATE messages SET status = 'delivered', delivered_at = ?1, updated_at = ?1 \
     WHERE id = ?2 AND receiver_id = ?3 AND status = 'sent' RETURNING ",
    message_columns!()
);

pub(crate) const MARK_READ: &str = concat!(
    "UPDATE messages SET status = 'read', read_at = ?1, \
     delivered_at = coalesce(delivered_at, ?1), updated_at = ?1 \
     WHERE id = ?2 AND receiver_id = ?3 AND status <> 'read' RETURNING ",
    message_columns!()
);

/// Reads the messages to `?4` in conversation (`?2`, `?3`) with ids from `?5` (the read
/// floor) to `?6`: a range of the conversation index.
pub(crate) const MARK_READ_UP_TO: &str = "UPDATE messages SET status = 'read', read_at = ?1, \
     delivered_at = coalesce(delivered_at, ?1), updated_at = ?1 \
     WHERE low_user_id = ?2 AND high_user_id = ?3 AND id >= ?5 AND id <= ?6 \
     AND receiver_id = ?4 AND status <> 'read' RETURNING id";

/// How many of the messages [`MARK_READ_UP_TO`] is about to read are still `sent`.
pub(crate) const SENT_UP_TO: &str = "SELECT count(*) FROM messages \
     WHERE low_user_id = ?1 AND high_user_id = ?2 AND id >= ?4 AND id <= ?5 \
     AND receiver_id = ?3 AND status = 'sent'";

/// The peers with messages to `?1` still `sent`, and where those start.
pub(crate) const PEERS_WITH_UNDELIVERED: &str = "SELECT peer_id, delivery_floor \
     FROM conversations WHERE user_id = ?1 AND undelivered_count > 0";

/// One conversation's messages to `?3` still `sent` with ids from `?4` and below `?5`,
/// oldest first.
pub(crate) const UNDELIVERED_FROM: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = ?1 AND high_user_id = ?2 AND id >= ?4 AND id < ?5 \
     AND receiver_id = ?3 AND status = 'sent' ORDER BY id LIMIT ?6"
);

/// The peers of a user's conversations with a message after `?2`, oldest activity first.
pub(crate) const PEERS_ACTIVE_AFTER: &str = "SELECT peer_id FROM conversations \
     WHERE user_id = ?1 AND last_message_id > ?2 ORDER BY last_message_id";

/// One conversation's messages strictly between two ids, oldest first.
pub(crate) const HISTORY_BETWEEN: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = ?1 AND high_user_id = ?2 AND id > ?3 AND id < ?4 \
     ORDER BY id ASC LIMIT ?5"
);

/// The peers of a user's conversations with a change after `?2` (the constant term
/// lets the planner use the partial index whatever `?2` is bound to).
pub(crate) const PEERS_CHANGED_AFTER: &str = "SELECT peer_id FROM conversations \
     WHERE user_id = ?1 AND last_revision > ?2 AND last_revision > 0";

/// One conversation's changes with revisions above `?3`, by revision: the message
/// columns, then the revision.
pub(crate) const CHANGES_AFTER: &str = concat!(
    "SELECT ",
    message_columns!(),
    ", revision FROM messages WHERE low_user_id = ?1 AND high_user_id = ?2 \
     AND revision > ?3 ORDER BY revision ASC LIMIT ?4"
);

/// The receiver of message `?1` if `?2` sent it and it is not deleted.
pub(crate) const AMENDABLE: &str =
    "SELECT receiver_id FROM messages WHERE id = ?1 AND sender_id = ?2 AND deleted_at IS NULL";

/// Takes the next number of the id sequence (the `AUTOINCREMENT` counter, which
/// `INSERT` then continues above). Its row exists once any message was stored.
pub(crate) const NEXT_POSITION: &str =
    "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'messages' RETURNING seq";

pub(crate) const EDIT: &str = concat!(
    "UPDATE messages SET message = ?1, edited_at = ?2, updated_at = ?2, revision = ?3 \
     WHERE id = ?4 RETURNING ",
    message_columns!()
);

pub(crate) const DELETE: &str = concat!(
    "UPDATE messages SET message = ?1, deleted_at = ?2, updated_at = ?2, revision = ?3 \
     WHERE id = ?4 RETURNING ",
    message_columns!()
);

/// Both participants' conversation rows: their newest change is `?3`.
pub(crate) const TOUCH_CHANGED: &str = "UPDATE conversations SET last_revision = ?3 \
     WHERE (user_id = ?1 AND peer_id = ?2) OR (user_id = ?2 AND peer_id = ?1)";

pub(crate) const CONVERSATIONS: &str = "SELECT m.id, m.sender_id, m.receiver_id, m.message, \
     m.status, m.client_message_id, m.created_at, m.updated_at, m.delivered_at, m.read_at, \
     m.edited_at, m.deleted_at, c.peer_id, c.unread_count \
     FROM conversations c JOIN messages m ON m.id = c.last_message_id \
     WHERE c.user_id = ?1 AND c.last_message_id < ?2 \
     ORDER BY c.last_message_id DESC LIMIT ?3";

pub(crate) const UNREAD_TOTAL: &str =
    "SELECT coalesce(sum(unread_count), 0) FROM conversations WHERE user_id = ?1";

/// The conversation key of a pair, as stored in `low_user_id` / `high_user_id`.
/// A row of [`CONVERSATIONS`]: the last message's columns, then the counterpart and
/// the unread count.
pub(crate) fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<ConversationSummary> {
    Ok(ConversationSummary {
        last_message: message_from_row(row)?,
        counterpart: UserId::new(row.get(12)?),
        unread_count: count(row.get(13)?),
    })
}

/// A stored count as a `u64`; a negative one (never written by this store) reads as 0.
pub(crate) fn count(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

pub(crate) fn conversation_key(a: UserId, b: UserId) -> (i64, i64) {
    (a.get().min(b.get()), a.get().max(b.get()))
}

/// Reads a message from the columns of `message_columns!`, starting at 0.
pub(crate) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let status: String = row.get(4)?;
    Ok(Message {
        id: MessageId::new(row.get(0)?),
        sender_id: UserId::new(row.get(1)?),
        receiver_id: UserId::new(row.get(2)?),
        message: row.get(3)?,
        status: status
            .parse::<MessageStatus>()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e)))?,
        client_message_id: row.get(5)?,
        created_at: time_at(row, 6)?,
        updated_at: time_at(row, 7)?,
        delivered_at: optional_time_at(row, 8)?,
        read_at: optional_time_at(row, 9)?,
        edited_at: optional_time_at(row, 10)?,
        deleted_at: optional_time_at(row, 11)?,
    })
}

pub(crate) fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<time::OffsetDateTime> {
    let micros: i64 = row.get(index)?;
    timestamp::from_unix_micros(micros).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            Type::Integer,
            Box::new(FromSqlError::OutOfRange(micros)),
        )
    })
}

fn optional_time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<time::OffsetDateTime>> {
    match row.get::<_, Option<i64>>(index)? {
        None => Ok(None),
        Some(_) => time_at(row, index).map(Some),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::Connection;

    use super::*;

    fn plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params, |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join(" | ")
    }

    fn migrated() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn).unwrap();
        // Statistics as a large table would have them, so the planner chooses as it
        // would in production.
        conn.execute_batch("ANALYZE").unwrap();
        conn
    }

    /// History must walk an index range in id order: no temporary B-tree (a sort of the
    /// whole conversation) and no table scan.
    #[test]
    fn history_queries_are_index_range_scans() {
        let conn = migrated();
        for (sql, plan_text) in [
            (HISTORY_PAGE, plan(&conn, HISTORY_PAGE, (1, 2, 50, 0))),
            (
                HISTORY_BEFORE,
                plan(&conn, HISTORY_BEFORE, (1, 2, i64::MAX, 50)),
            ),
            (HISTORY_AFTER, plan(&conn, HISTORY_AFTER, (1, 2, 0, 50))),
            (
                HISTORY_BETWEEN,
                plan(&conn, HISTORY_BETWEEN, (1, 2, 0, i64::MAX, 50)),
            ),
        ] {
            assert!(
                plan_text.contains("USING COVERING INDEX messages_conversation")
                    || plan_text.contains("USING INDEX messages_conversation"),
                "{sql}\n=> {plan_text}"
            );
            assert!(
                plan_text.contains("low_user_id=? AND high_user_id=?"),
                "{plan_text}"
            );
            assert!(
                !plan_text.contains("TEMP B-TREE"),
                "history sorts: {plan_text}"
            );
            assert!(!plan_text.starts_with("SCAN"), "history scans: {plan_text}");
        }
    }

    #[test]
    fn every_other_query_uses_an_index() {
        let conn = migrated();
        let cases = [
            ("GET", "INTEGER PRIMARY KEY", plan(&conn, GET, [1])),
            (
                "BY_CLIENT_ID",
                "messages_client_message_id",
                plan(&conn, BY_CLIENT_ID, (1, "k")),
            ),
            (
                "PEERS_WITH_UNDELIVERED",
                "PRIMARY KEY",
                plan(&conn, PEERS_WITH_UNDELIVERED, [1]),
            ),
            (
                "UNDELIVERED_FROM",
                "messages_conversation",
                plan(&conn, UNDELIVERED_FROM, (1, 2, 2, 0, i64::MAX, 50)),
            ),
            (
                "SENT_UP_TO",
                "messages_conversation",
                plan(&conn, SENT_UP_TO, (1, 2, 2, 0, 10)),
            ),
            (
                "STATUS_OF",
                "INTEGER PRIMARY KEY",
                plan(&conn, STATUS_OF, (1, 2)),
            ),
            (
                "UNREAD_TOTAL",
                "PRIMARY KEY",
                plan(&conn, UNREAD_TOTAL, [1]),
            ),
            (
                "READ_POSITION",
                "PRIMARY KEY",
                plan(&conn, READ_POSITION, (1, 2)),
            ),
            (
                "COUNT_STATUS_CHANGES",
                "PRIMARY KEY",
                plan(&conn, COUNT_STATUS_CHANGES, (1, 2, 1, 0, 1, 0)),
            ),
            (
                "MARK_READ_UP_TO",
                "messages_conversation",
                plan(&conn, MARK_READ_UP_TO, (0, 1, 2, 2, 0, 10)),
            ),
            (
                "CONVERSATIONS",
                "conversations_recent",
                plan(&conn, CONVERSATIONS, (1, i64::MAX, 20)),
            ),
            (
                "CONVERSATION_TOTAL",
                "PRIMARY KEY",
                plan(&conn, CONVERSATION_TOTAL, (1, 2)),
            ),
            (
                "PEERS_ACTIVE_AFTER",
                "conversations_recent",
                plan(&conn, PEERS_ACTIVE_AFTER, (1, 0)),
            ),
            (
                "PEERS_CHANGED_AFTER",
                "conversations_changed",
                plan(&conn, PEERS_CHANGED_AFTER, (1, 0)),
            ),
            (
                "CHANGES_AFTER",
                "messages_changes",
                plan(&conn, CHANGES_AFTER, (1, 2, 0, 50)),
            ),
            (
                "AMENDABLE",
                "INTEGER PRIMARY KEY",
                plan(&conn, AMENDABLE, (1, 2)),
            ),
            (
                "TOUCH_CHANGED",
                "PRIMARY KEY",
                plan(&conn, TOUCH_CHANGED, (1, 2, 3)),
            ),
            (
                "BLOCKED_BETWEEN",
                "PRIMARY KEY",
                plan(&conn, BLOCKED_BETWEEN, (1, 2)),
            ),
            (
                "INSERT_UNLESS_BLOCKED",
                "PRIMARY KEY",
                plan(&conn, INSERT_UNLESS_BLOCKED, (1, 2, "x", "k", 3)),
            ),
            ("BLOCKS", "PRIMARY KEY", plan(&conn, BLOCKS, [1])),
            (
                "LAST_SEEN",
                "INTEGER PRIMARY KEY",
                plan(&conn, LAST_SEEN, [1]),
            ),
        ];
        for (name, index, text) in cases {
            assert!(text.contains(index), "{name} does not use {index}: {text}");
            assert!(
                !text.contains("SCAN messages") && !text.contains("SCAN c"),
                "{name} scans: {text}"
            );
        }
        let backlog = plan(&conn, UNDELIVERED_FROM, (1, 2, 2, 0, i64::MAX, 50));
        assert!(!backlog.contains("TEMP B-TREE"), "{backlog}");
        let peers = plan(&conn, PEERS_ACTIVE_AFTER, (1, 0));
        assert!(!peers.contains("TEMP B-TREE"), "{peers}");
        let changes = plan(&conn, CHANGES_AFTER, (1, 2, 0, 50));
        assert!(!changes.contains("TEMP B-TREE"), "{changes}");
        let read_up_to = plan(&conn, MARK_READ_UP_TO, (0, 1, 2, 2, 0, 10));
        assert!(
            read_up_to.contains("id>? AND id<?"),
            "mark read up to is not a range: {read_up_to}"
        );
        for update in [EDIT, DELETE] {
            let text = plan(&conn, update, ("", 0, 1, 2));
            assert!(text.contains("INTEGER PRIMARY KEY"), "{update}: {text}");
        }
        for update in [MARK_DELIVERED, MARK_READ] {
            let text = plan(&conn, update, (0, 1, 2));
            assert!(text.contains("INTEGER PRIMARY KEY"), "{update}: {text}");
        }
    }
}
