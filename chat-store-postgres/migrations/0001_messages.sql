-- Messages, and one row per (user, peer) summarising each conversation.

CREATE TABLE messages (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_id         BIGINT NOT NULL,
    receiver_id       BIGINT NOT NULL,
    message           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'sent'
                      CHECK (status IN ('sent', 'delivered', 'read')),
    client_message_id TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    delivered_at      TIMESTAMPTZ,
    read_at           TIMESTAMPTZ,
    -- The conversation key, equal for both directions: a history page is one index
    -- range instead of a sort of (a->b OR b->a).
    low_user_id       BIGINT GENERATED ALWAYS AS (LEAST(sender_id, receiver_id)) STORED,
    high_user_id      BIGINT GENERATED ALWAYS AS (GREATEST(sender_id, receiver_id)) STORED
);

CREATE INDEX messages_conversation ON messages (low_user_id, high_user_id, id);
CREATE UNIQUE INDEX messages_client_message_id ON messages (sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
CREATE INDEX messages_sender ON messages (sender_id, id);
CREATE INDEX messages_receiver ON messages (receiver_id, id);
CREATE INDEX messages_undelivered ON messages (receiver_id, id) WHERE status = 'sent';
CREATE INDEX messages_unread ON messages (receiver_id, sender_id, id) WHERE status <> 'read';

CREATE TABLE conversations (
    user_id         BIGINT NOT NULL,
    peer_id         BIGINT NOT NULL,
    last_message_id BIGINT NOT NULL,
    message_count   BIGINT NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);

CREATE INDEX conversations_recent ON conversations (user_id, last_message_id);
