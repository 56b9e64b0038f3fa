-- The console (CONTRACT.md §12): its sign-in sessions, and the figures it
-- charts, one row per minute.

-- A session made by signing in with an API key. Neither the session's
-- token nor the key is stored: the token's SHA-256, and the key's digest
-- as api_keys stores it (every page re-checks that key, so a revoked or
-- expired key ends its sessions at once). Expired rows go with retention.
CREATE TABLE console_sessions (
    token_hash bytea PRIMARY KEY,
    key_hash bytea NOT NULL,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

-- The deployment's figures, a row per minute, written by whichever API
-- process refreshes the operations snapshot; the overview's charts read
-- the last 24 hours. started/completed/failed count the jobs of that
-- minute; the rest are what the snapshot saw just after it.
CREATE TABLE console_samples (
    minute timestamptz PRIMARY KEY,
    ready bigint,
    unacked bigint,
    oldest_pending_seconds double precision,
    started bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL,
    workers bigint NOT NULL,
    dead_letters bigint,
    outbox_pending bigint NOT NULL
);
