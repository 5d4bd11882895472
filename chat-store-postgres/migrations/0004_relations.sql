-- What the store keeps about users rather than messages.

-- blocker_id blocks blocked_id: no message between the two either way (the insert
-- checks this table in its own statement), and no presence or typing shown.
CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL,
    blocked_id BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);

-- The last time each user was connected: presence that outlives a restart.
CREATE TABLE last_seen (
    user_id BIGINT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL
);
