-- Messages, and one row per (user, peer) summarising each conversation.
-- Times are microseconds since the Unix epoch, UTC.

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_id         INTEGER NOT NULL,
    receiver_id       INTEGER NOT NULL,
    message           TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'sent'
                      CHECK (status IN ('sent', 'delivered', 'read')),
    client_message_id TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    delivered_at      INTEGER,
    read_at           INTEGER,
    -- The conversation key, equal for both directions, so a history page is one
    -- index range instead of a sort of (a->b OR b->a).
    low_user_id       INTEGER NOT NULL GENERATED ALWAYS AS (min(sender_id, receiver_id)) VIRTUAL,
    high_user_id      INTEGER NOT NULL GENERATED ALWAYS AS (max(sender_id, receiver_id)) VIRTUAL
);

-- History in either direction, by id.
CREATE INDEX messages_conversation ON messages (low_user_id, high_user_id, id);
-- Idempotent sends.
CREATE UNIQUE INDEX messages_client_message_id ON messages (sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
-- Catch-up of one user's messages after a cursor (the two halves of a UNION ALL).
CREATE INDEX messages_sender ON messages (sender_id, id);
CREATE INDEX messages_receiver ON messages (receiver_id, id);
-- The undelivered backlog of a connecting device.
CREATE INDEX messages_undelivered ON messages (receiver_id, id) WHERE status = 'sent';
-- Unread counts and mark-read-up-to, per conversation and in total.
CREATE INDEX messages_unread ON messages (receiver_id, sender_id, id) WHERE status <> 'read';

-- Maintained in the insert transaction: the conversation list is a range of this table
-- and a history page's total is one lookup.
CREATE TABLE conversations (
    user_id         INTEGER NOT NULL,
    peer_id         INTEGER NOT NULL,
    last_message_id INTEGER NOT NULL,
    message_count   INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer_id)
) WITHOUT ROWID;

CREATE INDEX conversations_recent ON conversations (user_id, last_message_id);
