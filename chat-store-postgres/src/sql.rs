//! Every statement the store runs, and the mapping from rows to messages.

use chat_core::{Message, MessageId, MessageStatus, UserId};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The columns of [`message_from_row`].
macro_rules! message_columns {
    () => {
        "id, sender_id, receiver_id, message, status, client_message_id, \
         created_at, updated_at, delivered_at, read_at, edited_at, deleted_at"
    };
}

/// Both participants' locks, the smaller id first so two inserts never wait on each
/// other in opposite orders. Held until commit: for any one user, ids are drawn and
/// committed in the same order, which makes "after id N" gap-free.
pub(crate) const LOCK_PARTICIPANTS: &str = "SELECT pg_advisory_xact_lock(hashtextextended('chat-user', $1)), \
            pg_advisory_xact_lock(hashtextextended('chat-user', $2))";

/// How long the check of a lost commit waits for the broken transaction's locks.
pub(crate) const RESOLUTION_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

/// Inserts a group of messages in one statement, each as a single insert would alone:
/// first the advisory locks of every user of `$6` (ascending, as `LOCK_PARTICIPANTS`
/// takes its two; the function scan feeding the aggregate calls the lock in the array's
/// order), a one-time filter that runs before the first id is drawn; then ids drawn in
/// the input's order, a row across a block or with a key already taken (also earlier in
/// the group) skipped, conversation rows counted once per conversation. The id
/// sequence is looked up once per statement (per row, its lookup cost more than the
/// draw). Answers each input row in order: its drawn id and whether it was stored.
pub(crate) const INSERT_GROUP: &str = "WITH locked AS ( \
       SELECT count(pg_advisory_xact_lock(hashtextextended('chat-user', u))) AS users \
       FROM unnest($6::bigint[]) AS u), \
     input AS ( \
       SELECT t.*, nextval((SELECT pg_get_serial_sequence('messages', 'id')::regclass)) AS id \
       FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) \
         WITH ORDINALITY AS t(sender_id, receiver_id, message, client_message_id, created_at, ord) \
       WHERE (SELECT users FROM locked) IS NOT NULL), \
     inserted AS ( \
       INSERT INTO messages (id, sender_id, receiver_id, message, client_message_id, created_at, updated_at) \
       OVERRIDING SYSTEM VALUE \
       SELECT id, sender_id, receiver_id, message, client_message_id, created_at, created_at FROM input \
       WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = input.sender_id AND blocked_id = input.receiver_id) \
         AND NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = input.receiver_id AND blocked_id = input.sender_id) \
       ORDER BY ord \
       ON CONFLICT (sender_id, client_message_id) WHERE client_message_id IS NOT NULL DO NOTHING \
       RETURNING id, sender_id, receiver_id), \
     touched AS ( \
       INSERT INTO conversations (user_id, peer_id, last_message_id, message_count) \
       SELECT user_id, peer_id, max(id), count(*) FROM ( \
         SELECT sender_id AS user_id, receiver_id AS peer_id, id FROM inserted \
         UNION ALL SELECT receiver_id, sender_id, id FROM inserted) AS sides \
       GROUP BY user_id, peer_id \
       ON CONFLICT (user_id, peer_id) DO UPDATE SET \
         last_message_id = GREATEST(conversations.last_message_id, excluded.last_message_id), \
         message_count = conversations.message_count + excluded.message_count) \
     SELECT input.id, inserted.id IS NOT NULL AS stored \
     FROM input LEFT JOIN inserted ON inserted.id = input.id ORDER BY input.ord";

/// Records a block unless it exists; answers the stored time and whether it is new.
pub(crate) const BLOCK: &str = "WITH made AS ( \
       INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3) \
       ON CONFLICT DO NOTHING RETURNING created_at) \
     SELECT created_at, true AS created FROM made \
     UNION ALL SELECT created_at, false FROM blocks \
       WHERE blocker_id = $1 AND blocked_id = $2 AND NOT EXISTS (SELECT 1 FROM made)";

pub(crate) const UNBLOCK: &str = "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2";

pub(crate) const BLOCKS: &str = "SELECT blocked_id, created_at FROM blocks \
     WHERE blocker_id = $1 ORDER BY created_at DESC, blocked_id DESC";

/// Of the users `$2`, those with a block between them and `$1`, either way.
pub(crate) const BLOCKED_AMONG: &str = "SELECT blocked_id FROM blocks \
       WHERE blocker_id = $1 AND blocked_id = ANY($2) \
     UNION SELECT blocker_id FROM blocks WHERE blocked_id = $1 AND blocker_id = ANY($2)";

/// Of the users `$2`, those `$1` has a conversation with.
pub(crate) const ACQUAINTED_AMONG: &str =
    "SELECT peer_id FROM conversations WHERE user_id = $1 AND peer_id = ANY($2)";

pub(crate) const SET_LAST_SEEN: &str = "INSERT INTO last_seen (user_id, seen_at) VALUES ($1, $2) \
     ON CONFLICT (user_id) DO UPDATE SET seen_at = GREATEST(last_seen.seen_at, excluded.seen_at)";

pub(crate) const LAST_SEEN: &str = "SELECT user_id, seen_at FROM last_seen WHERE user_id = ANY($1)";

pub(crate) const BY_CLIENT_ID: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE sender_id = $1 AND client_message_id = $2"
);

pub(crate) const GET: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE id = $1"
);

pub(crate) const CONVERSATION_TOTAL: &str =
    "SELECT message_count FROM conversations WHERE user_id = $1 AND peer_id = $2";

pub(crate) const HISTORY_PAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = $1 AND high_user_id = $2 \
     ORDER BY id DESC LIMIT $3 OFFSET $4"
);

pub(crate) const HISTORY_BEFORE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = $1 AND high_user_id = $2 AND id < $3 \
     ORDER BY id DESC LIMIT $4"
);

pub(crate) const HISTORY_AFTER: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE low_user_id = $1 AND high_user_id = $2 AND id > $3 \
     ORDER BY id ASC LIMIT $4"
);

pub(crate) const MARK_DELIVERED: &str = concat!(
    "UPDATE messages SET status = 'delivered', delivered_at = $1, updated_at = $1 \
     WHERE id = ANY($2) AND receiver_id = $3 AND status = 'sent' RETURNING ",
    message_columns!()
);

pub(crate) const MARK_READ: &str = concat!(
    "UPDATE messages SET status = 'read', read_at = $1, \
     delivered_at = COALESCE(delivered_at, $1), updated_at = $1 \
     WHERE id = ANY($2) AND receiver_id = $3 AND status <> 'read' RETURNING ",
    message_columns!()
);

pub(crate) const MARK_READ_UP_TO: &str = "UPDATE messages SET status = 'read', read_at = $1, \
     delivered_at = COALESCE(delivered_at, $1), updated_at = $1 \
     WHERE receiver_id = $2 AND sender_id = $3 AND status <> 'read' AND id <= $4 RETURNING id";

pub(crate) const UNDELIVERED: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE receiver_id = $1 AND status = 'sent' AND id > $2 \
     ORDER BY id LIMIT $3"
);

/// A user's feed after a cursor: new messages at their ids and changes at their
/// revisions, four index ranges merged instead of one `OR`.
pub(crate) const FEED_AFTER: &str = concat!(
    "(SELECT ",
    message_columns!(),
    ", id AS position FROM messages WHERE sender_id = $1 AND id > $2 ORDER BY id LIMIT $3) \
     UNION ALL (SELECT ",
    message_columns!(),
    ", id AS position FROM messages WHERE receiver_id = $1 AND id > $2 ORDER BY id LIMIT $3) \
     UNION ALL (SELECT ",
    message_columns!(),
    ", revision AS position FROM messages WHERE sender_id = $1 AND revision > $2 \
     ORDER BY revision LIMIT $3) \
     UNION ALL (SELECT ",
    message_columns!(),
    ", revision AS position FROM messages WHERE receiver_id = $1 AND revision > $2 \
     ORDER BY revision LIMIT $3) \
     ORDER BY position LIMIT $3"
);

/// The receiver of message `$1` if `$2` sent it and it is not deleted.
pub(crate) const AMENDABLE: &str =
    "SELECT receiver_id FROM messages WHERE id = $1 AND sender_id = $2 AND deleted_at IS NULL";

pub(crate) const EDIT: &str = concat!(
    "UPDATE messages SET message = $1, edited_at = $2, updated_at = $2, \
     revision = nextval(pg_get_serial_sequence('messages', 'id')) \
     WHERE id = $3 AND sender_id = $4 AND deleted_at IS NULL RETURNING revision, ",
    message_columns!()
);

pub(crate) const DELETE: &str = concat!(
    "UPDATE messages SET message = $1, deleted_at = $2, updated_at = $2, \
     revision = nextval(pg_get_serial_sequence('messages', 'id')) \
     WHERE id = $3 AND sender_id = $4 AND deleted_at IS NULL RETURNING revision, ",
    message_columns!()
);

pub(crate) const CONVERSATIONS: &str = "SELECT m.id, m.sender_id, m.receiver_id, m.message, \
     m.status, m.client_message_id, m.created_at, m.updated_at, m.delivered_at, m.read_at, \
     m.edited_at, m.deleted_at, c.peer_id, (SELECT count(*) FROM messages u WHERE u.receiver_id = c.user_id \
        AND u.sender_id = c.peer_id AND u.status <> 'read') AS unread \
     FROM conversations c JOIN messages m ON m.id = c.last_message_id \
     WHERE c.user_id = $1 AND c.last_message_id < $2 \
     ORDER BY c.last_message_id DESC LIMIT $3";

pub(crate) const UNREAD_TOTAL: &str =
    "SELECT count(*) FROM messages WHERE receiver_id = $1 AND status <> 'read'";

/// The conversation key of a pair, as stored in `low_user_id` / `high_user_id`.
pub(crate) fn conversation_key(a: UserId, b: UserId) -> (i64, i64) {
    (a.get().min(b.get()), a.get().max(b.get()))
}

/// Reads a message from the columns of `message_columns!`.
pub(crate) fn message_from_row(row: &PgRow) -> Result<Message, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Message {
        id: MessageId::new(row.try_get("id")?),
        sender_id: UserId::new(row.try_get("sender_id")?),
        receiver_id: UserId::new(row.try_get("receiver_id")?),
        message: row.try_get("message")?,
        status: status
            .parse::<MessageStatus>()
            .map_err(|e| sqlx::Error::ColumnDecode {
                index: "status".to_owned(),
                source: Box::new(e),
            })?,
        client_message_id: row.try_get("client_message_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        delivered_at: row.try_get("delivered_at")?,
        read_at: row.try_get("read_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}
