-- Edits and deletions for everyone by the sender.
--
-- revision: the change's number, drawn from the same sequence as message ids (the
--           AUTOINCREMENT counter), so a device resuming "after N" sees changes made
--           since N as it sees new messages. NULL until the message first changes.
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
ALTER TABLE messages ADD COLUMN revision INTEGER;

-- One conversation's changes after a cursor. Partial: a new message has no revision,
-- so an insert writes no entry here.
CREATE INDEX messages_changes ON messages (low_user_id, high_user_id, revision)
    WHERE revision IS NOT NULL;

-- Each user's conversations by their newest change, so catch-up finds the
-- conversations changed since its cursor. Inserts never write this column, and rows
-- without a change have no index entry.
ALTER TABLE conversations ADD COLUMN last_revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX conversations_changed ON conversations (user_id, last_revision)
    WHERE last_revision > 0;
