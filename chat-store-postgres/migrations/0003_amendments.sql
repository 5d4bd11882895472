-- Edits and deletions for everyone by the sender.
--
-- revision: the change's number, drawn from the id sequence under both participants'
--           locks, so for any one user ids and revisions commit in order and "after N"
--           sees changes made since N as it sees new messages. NULL until the message
--           first changes.
ALTER TABLE messages
    ADD COLUMN edited_at  TIMESTAMPTZ,
    ADD COLUMN deleted_at TIMESTAMPTZ,
    ADD COLUMN revision   BIGINT;

-- A user's changes after a cursor (the two halves of a UNION ALL). Partial: a new
-- message has no revision, so an insert writes no entry here.
CREATE INDEX messages_sender_changes ON messages (sender_id, revision)
    WHERE revision IS NOT NULL;
CREATE INDEX messages_receiver_changes ON messages (receiver_id, revision)
    WHERE revision IS NOT NULL;
