-- The job outbox: background work written beside the change that causes it.
-- A claim's lease is its attempt number: finishing needs the current one.

CREATE TABLE jobs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     BIGINT,           -- the message the job is about, if any
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    last_error  TEXT,
    lease_until TIMESTAMPTZ
);

-- What claims scan: pending jobs by due time, running ones by lease end.
CREATE INDEX jobs_due ON jobs (due_at, id) WHERE state = 'pending';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_listed ON jobs (state, created_at, id);
