-- The live API processes: each refreshes its row every few seconds and
-- enforces its share (1/n) of the deployment-wide per-key limits, n being
-- the rows seen recently. A process that stops deletes its row; one that
-- dies is no longer counted once its row is stale, and is removed later.
CREATE TABLE api_processes (
    id         uuid PRIMARY KEY,
    hostname   text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);
