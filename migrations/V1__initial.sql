-- syncway's initial schema.
--
-- Every object belongs to an organization; the API scopes every query by the
-- caller's organization so that other tenants' rows look missing (404).
-- Timestamps are timestamptz (stored as UTC). Status columns are text with a
-- CHECK so that a bad value can never be written, even by hand.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 digest of each key is stored: keys are long random strings,
-- so a fast digest is enough (no salt or slow hash is needed) and the lookup
-- stays an index probe.
CREATE TABLE api_keys (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key_hash         bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    revoked_at       timestamptz
);

-- readable_id is unique per organization (not globally): a global constraint
-- would let one tenant discover another's collection names through 409s.
CREATE TABLE collections (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             text NOT NULL,
    readable_id      text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    modified_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT collections_readable_id_unique UNIQUE (organization_id, readable_id)
);

-- A source connection: which connector, its (validated) config, its schedule.
-- credentials holds an encrypted blob (never plain text), or NULL.
-- needs_reauth is set when a job fails on credentials and cleared when PATCH
-- supplies new ones; while set, runs answer 409.
CREATE TABLE source_connections (
    id                   uuid PRIMARY KEY,
    organization_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    collection_id        uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    description          text,
    short_name           text NOT NULL,
    config               jsonb NOT NULL DEFAULT '{}',
    schedule_cron        text,
    continuous           boolean NOT NULL DEFAULT false,
    cursor_field         text,
    credentials          bytea,
    needs_reauth         boolean NOT NULL DEFAULT false,
    auth_error_category  text,
    auth_error_message   text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    modified_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX source_connections_by_org ON source_connections (organization_id, created_at);
CREATE INDEX source_connections_by_collection ON source_connections (collection_id);

-- One row per sync job. The worker that runs a job holds a lease on it
-- (lease_owner until lease_expires_at); every write a worker makes is guarded
-- by its ownership of the lease, so a job never runs on two workers at once.
-- attempt counts claims: a job taken over after a crash has attempt > 1.
CREATE TABLE sync_jobs (
    id                   uuid PRIMARY KEY,
    source_connection_id uuid NOT NULL REFERENCES source_connections (id) ON DELETE CASCADE,
    status               text NOT NULL DEFAULT 'pending' CHECK (status IN
                           ('pending', 'running', 'completed', 'failed', 'cancelling', 'cancelled')),
    force_full_sync      boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    modified_at          timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    completed_at         timestamptz,
    entities_inserted    bigint NOT NULL DEFAULT 0,
    entities_updated     bigint NOT NULL DEFAULT 0,
    entities_deleted     bigint NOT NULL DEFAULT 0,
    entities_failed      bigint NOT NULL DEFAULT 0,
    error                text,
    error_category       text,
    error_details        jsonb,
    attempt              integer NOT NULL DEFAULT 0,
    lease_owner          text,
    lease_expires_at     timestamptz,
    -- Pending, running or cancelling. Derived, never written directly.
    active               boolean NOT NULL
        GENERATED ALWAYS AS (status IN ('pending', 'running', 'cancelling')) STORED,
    -- A terminal job has its completion time; a non-terminal one does not.
    CONSTRAINT sync_jobs_completed_at_iff_terminal CHECK (
        (status IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL))
)
-- Room on each page for HOT updates (below).
WITH (fillfactor = 70);

-- The database, not the application, guarantees at most one pending, running
-- or cancelling job per connection: of two simultaneous triggers exactly one
-- insert succeeds and the other violates this index (answered 409).
--
-- The predicate is the generated column `active` rather than `status IN
-- (...)`: the meaning is the same, but Postgres can update a row in place
-- (HOT, no index writes) only when no indexed value changes, and a predicate
-- column counts as indexed. With `active`, the claim (pending -> running),
-- lease renewals and progress counts change no indexed value; only the
-- final status does.
CREATE UNIQUE INDEX one_active_job_per_connection ON sync_jobs (source_connection_id)
    WHERE active;

-- Listing a connection's jobs newest first.
CREATE INDEX sync_jobs_by_connection ON sync_jobs (source_connection_id, created_at DESC, id DESC);

-- Hot-path tables (cursors, entities, outbox) have no foreign keys: an FK
-- check locks the parent row (FOR KEY SHARE) on every insert, which costs a
-- tuple write and WAL per entity or job. Integrity holds without them:
-- workers write cursors and entities only in a statement fenced by their
-- job's row (a deleted job or connection makes the write a no-op), and
-- deleting a connection removes its rows from these tables explicitly, in
-- the same transaction.

-- The sync state of a connection: its incremental-sync cursor and its
-- entity count. The row is created with the connection, and every committed
-- batch updates it in the same statement as the entities it covers, so the
-- cursor never runs ahead of the data and reading a connection never counts
-- a million rows. These columns change with every batch; keeping them out of
-- source_connections (whose pages are full and which has three indexes) and
-- leaving room on each page makes that update HOT: no index writes.
CREATE TABLE cursors (
    source_connection_id uuid PRIMARY KEY,
    -- Null until a sync stores one.
    value                jsonb,
    -- The job that stored the cursor.
    job_id               uuid,
    entity_count         bigint NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
)
WITH (fillfactor = 50);

-- The synced entities. content_hash is BLAKE3 of the payload's canonical JSON;
-- comparing it decides inserted / updated / unchanged. A full sync stamps every
-- entity it sees with its job id (last_seen_job); when it completes, the
-- entities of the connection without that stamp are the ones the source no
-- longer has, and are deleted. The stamp is durable, so a full sync resumed
-- after a crash still deletes exactly the right rows.
CREATE TABLE entities (
    source_connection_id uuid NOT NULL,
    entity_id            text NOT NULL,
    content_hash         bytea NOT NULL,
    payload              jsonb NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_seen_job        uuid,
    PRIMARY KEY (source_connection_id, entity_id)
);

-- Transactional outbox: a trigger inserts the job and its message here in one
-- transaction; the relay publishes the message with publisher confirms and
-- deletes the row only after the broker confirmed it. A broker outage delays
-- jobs but cannot lose them.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A message whose job was deleted meanwhile is dropped by the worker.
    job_id      uuid NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
