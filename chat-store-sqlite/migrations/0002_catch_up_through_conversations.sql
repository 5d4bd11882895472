-- Catch-up of one user's messages after a cursor now walks that user's conversations
-- (`conversations_recent`, then `messages_conversation` per conversation), so every
-- insert no longer writes an entry into two per-user indexes. Those two entries were
-- a third of the pages a durable insert dirtied.
DROP INDEX messages_sender;
DROP INDEX messages_receiver;
