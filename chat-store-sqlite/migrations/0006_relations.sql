-- What the store keeps about users rather than messages. Times are Unix microseconds.

-- blocker_id blocks blocked_id: no message between the two either way (the insert
-- checks this table in its own transaction), and no presence or typing shown.
CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL,
    blocked_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) WITHOUT ROWID;

-- The last time each user was connected: presence that outlives a restart.
CREATE TABLE last_seen (
    user_id INTEGER PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
