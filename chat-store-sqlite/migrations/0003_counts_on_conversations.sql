-- Unread and undelivered counts live on the receiver's conversation row, updated in
-- the same transaction as the message, so an insert no longer writes an entry into
-- two per-user indexes (two B-tree pages per insert).
--
-- unread_count:      messages from peer_id to user_id that are not read.
-- read_floor:        every message from peer_id to user_id below this id is read, so
--                    "mark read up to" scans the conversation index from here.
-- undelivered_count: messages from peer_id to user_id still 'sent'.
-- delivery_floor:    every message from peer_id to user_id below this id is delivered
--                    or read, so the backlog scans the conversation index from here.
ALTER TABLE conversations ADD COLUMN unread_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN read_floor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN undelivered_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN delivery_floor INTEGER NOT NULL DEFAULT 0;

UPDATE conversations SET
    unread_count = (SELECT count(*) FROM messages u
                    WHERE u.receiver_id = conversations.user_id
                      AND u.sender_id = conversations.peer_id
                      AND u.status <> 'read'),
    read_floor = coalesce((SELECT min(u.id) FROM messages u
                           WHERE u.receiver_id = conversations.user_id
                             AND u.sender_id = conversations.peer_id
                             AND u.status <> 'read'),
                          last_message_id + 1),
    undelivered_count = (SELECT count(*) FROM messages u
                         WHERE u.receiver_id = conversations.user_id
                           AND u.sender_id = conversations.peer_id
                           AND u.status = 'sent'),
    delivery_floor = coalesce((SELECT min(u.id) FROM messages u
                               WHERE u.receiver_id = conversations.user_id
                                 AND u.sender_id = conversations.peer_id
                                 AND u.status = 'sent'),
                              last_message_id + 1);

DROP INDEX messages_unread;
DROP INDEX messages_undelivered;
