-- V8: what operators watch.
--
-- workers: each worker process records itself, refreshes last_seen (and
-- jobs_in_flight) on its registry heartbeat, and deletes its row on a
-- clean shutdown. A row unseen for three heartbeats is shown as gone; rows
-- unseen for an hour are pruned by the other workers.
CREATE TABLE workers (
    id                 text PRIMARY KEY,
    hostname           text NOT NULL,
    version            text NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    last_seen          timestamptz NOT NULL DEFAULT now(),
    heartbeat_seconds  double precision NOT NULL,
    concurrency        integer NOT NULL,
    jobs_in_flight     integer NOT NULL DEFAULT 0
);

-- The deployment's figures that cost a query or a broker call, refreshed by
-- one API process at a time (under an advisory lock) and read by all, so
-- that a scrape costs nothing and replicas do not multiply the load. One
-- row.
CREATE TABLE ops_snapshot (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    taken_at   timestamptz NOT NULL,
    figures    jsonb NOT NULL
);

-- The oldest pending job, found without a scan.
CREATE INDEX sync_jobs_pending_by_age ON sync_jobs (created_at) WHERE status = 'pending';
