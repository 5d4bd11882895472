-- The job outbox: background work written beside the change that causes it.
-- state: 0 pending, 1 running (leased), 2 dead. Times are Unix microseconds.
-- A claim's lease is its attempt number: finishing needs the current one.

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    subject     INTEGER,          -- the message the job is about, if any
    payload     TEXT NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)),
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    last_error  TEXT,
    lease_until INTEGER
);

-- What claims scan: pending jobs by due time, running ones by lease end.
CREATE INDEX jobs_due ON jobs (state, due_at, id);
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 1;
CREATE INDEX jobs_listed ON jobs (state, created_at, id);
