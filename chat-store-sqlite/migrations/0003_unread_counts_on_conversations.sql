-- Unread counts live on the receiver's conversation row, updated in the same
-- transaction as the message, so an insert no longer writes an entry into a per-user
-- unread index (one B-tree page per insert).
--
-- unread_count: messages from peer_id to user_id that are not read.
-- read_floor:   every message from peer_id to user_id with an id below it is read, so
--               "mark read up to" scans the conversation index from here, not from
--               the first message.
ALTER TABLE conversations ADD COLUMN unread_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN read_floor INTEGER NOT NULL DEFAULT 0;

UPDATE conversations SET
    unread_count = (SELECT count(*) FROM messages u
                    WHERE u.receiver_id = conversations.user_id
                      AND u.sender_id = conversations.peer_id
                      AND u.status <> 'read'),
    read_floor = coalesce((SELECT min(u.id) FROM messages u
                           WHERE u.receiver_id = conversations.user_id
                             AND u.sender_id = conversations.peer_id
                             AND u.status <> 'read'),
                          last_message_id + 1);

DROP INDEX messages_unread;
