-- V17: history that tells what happened and costs nothing to keep.
--
-- 1. job_timeline: what happened to each job, one row per event, written
--    by triggers on sync_jobs inside the statement that changes the job (no
--    extra round trip, and no code path that changes a job can forget it).
-- 2. job_totals and connection_runs: finished jobs counted as they finish,
--    so that no figure an operator or a client reads counts the history.
-- 3. audit_log: every request that changes something.
-- 4. deleted_connections: a deleted connection's entities and jobs are
--    removed in the background, in small batches, by the retention loop;
--    the request only removes the connection, its active job and cursor.

CREATE TABLE job_timeline (
    job_id     uuid NOT NULL,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind       text NOT NULL,
    attempt    integer NOT NULL,
    worker_id  text,
    message    text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (job_id, seq)
);

-- When the last `progress` item of a job was written: batches committed
-- within five seconds of it add none (coalesced). Not indexed, so writing
-- it keeps the commit's update HOT.
ALTER TABLE sync_jobs
    ADD COLUMN progress_noted_at   timestamptz,
    ADD COLUMN cancel_requested_by uuid;

-- Finished jobs by status. A job that ends adds a row to job_ends (no
-- index, no shared row: one commit statement ends many jobs at once, and
-- concurrent ones must never wait on, or deadlock over, a counter row);
-- the snapshot refresher, one process at a time, moves them into
-- job_totals. The two together are every job that ever ended.
CREATE TABLE job_totals (
    status text PRIMARY KEY,
    n      bigint NOT NULL
);
CREATE TABLE job_ends (
    status text NOT NULL
);

-- A connection's finished runs, counted when they finish.
CREATE TABLE connection_runs (
    source_connection_id uuid PRIMARY KEY,
    completed            bigint NOT NULL DEFAULT 0,
    failed               bigint NOT NULL DEFAULT 0,
    cancelled            bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

INSERT INTO job_totals (status, n)
SELECT status, count(*) FROM sync_jobs
WHERE status IN ('completed', 'failed', 'cancelled') GROUP BY status;

INSERT INTO connection_runs (source_connection_id, completed, failed, cancelled)
SELECT source_connection_id,
       count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'cancelled')
FROM sync_jobs WHERE NOT active GROUP BY source_connection_id;

CREATE FUNCTION syncway_timeline_note(
    job uuid, kind text, attempt integer, worker text, message text, details jsonb
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO job_timeline (job_id, kind, attempt, worker_id, message, details)
    VALUES (job, kind, attempt, worker, message, details)
$$;

CREATE FUNCTION syncway_job_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM syncway_timeline_note(NEW.id, 'created', NEW.attempt, NULL,
        CASE WHEN NEW.trigger = 'schedule' THEN 'created by the schedule'
             ELSE 'created through the API' END,
        jsonb_build_object('trigger', NEW.trigger, 'scheduled_for', NEW.scheduled_for,
                           'force_full_sync', NEW.force_full_sync));
    RETURN NULL;
END $$;

CREATE TRIGGER sync_jobs_timeline_created AFTER INSERT ON sync_jobs
FOR EACH ROW EXECUTE FUNCTION syncway_job_created();

-- One function reads the change a statement makes to a job and writes what
-- it means. It runs BEFORE the update so that it can stamp
-- progress_noted_at on the row being written.
CREATE FUNCTION syncway_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    counts jsonb := jsonb_build_object(
        'inserted', NEW.entities_inserted, 'updated', NEW.entities_updated,
        'deleted', NEW.entities_deleted, 'failed', NEW.entities_failed);
    by_key text;
BEGIN
    -- The reaper found the lease of its worker expired.
    IF NEW.requeued_at IS DISTINCT FROM OLD.requeued_at AND OLD.lease_owner IS NOT NULL
       AND OLD.lease_expires_at < now() AND NEW.attempt = OLD.attempt THEN
        PERFORM syncway_timeline_note(NEW.id, 'lease_lost', OLD.attempt, OLD.lease_owner,
            'the lease of worker ' || OLD.lease_owner || ' expired; the job is queued again',
            jsonb_build_object('lease_expired_at', OLD.lease_expires_at));
    END IF;
    IF NEW.attempt > OLD.attempt THEN
        IF OLD.lease_owner IS NOT NULL THEN
            PERFORM syncway_timeline_note(NEW.id, 'taken_over', NEW.attempt, NEW.lease_owner,
                'taken over from worker ' || OLD.lease_owner || ', whose lease had expired',
                jsonb_build_object('from_worker', OLD.lease_owner,
                                   'lease_expired_at', OLD.lease_expires_at));
        END IF;
        PERFORM syncway_timeline_note(NEW.id, 'claimed', NEW.attempt, NEW.lease_owner,
            'claimed by worker ' || NEW.lease_owner || ' (attempt ' || NEW.attempt || ')',
            jsonb_build_object('resumed', NEW.attempt > 1));
    ELSIF NEW.attempt < OLD.attempt THEN
        PERFORM syncway_timeline_note(NEW.id, 'released', OLD.attempt, OLD.lease_owner,
            'handed back by worker ' || OLD.lease_owner || ' (shutting down)', '{}');
    END IF;
    IF NEW.retry_at IS NOT NULL AND NEW.retry_at IS DISTINCT FROM OLD.retry_at
       AND OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL THEN
        PERFORM syncway_timeline_note(NEW.id, 'retry_scheduled', NEW.attempt, OLD.lease_owner,
            'retry at ' || to_char(NEW.retry_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                || ': ' || COALESCE(NEW.error, 'transient error'),
            jsonb_build_object('retry_at', NEW.retry_at, 'error', NEW.error,
                               'details', NEW.error_details));
    END IF;
    IF NEW.held_since IS NOT NULL AND OLD.held_since IS NULL THEN
        PERFORM syncway_timeline_note(NEW.id, 'held_back', NEW.attempt, NULL,
            'held back: its organization runs as many jobs as it may at once',
            jsonb_build_object('cap', 'organization', 'organization_id', NEW.held_org));
    END IF;
    IF NEW.status = OLD.status AND NEW.status = 'running'
       AND counts IS DISTINCT FROM jsonb_build_object(
           'inserted', OLD.entities_inserted, 'updated', OLD.entities_updated,
           'deleted', OLD.entities_deleted, 'failed', OLD.entities_failed)
       AND (OLD.progress_noted_at IS NULL OR OLD.progress_noted_at <= now() - interval '5 seconds') THEN
        PERFORM syncway_timeline_note(NEW.id, 'progress', NEW.attempt, NEW.lease_owner,
            'batches committed: ' || NEW.entities_inserted || ' inserted, '
                || NEW.entities_updated || ' updated, ' || NEW.entities_deleted || ' deleted, '
                || NEW.entities_failed || ' failed so far', counts);
        NEW.progress_noted_at := now();
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status IN ('cancelling', 'cancelled') AND OLD.status NOT IN ('cancelling', 'cancelled') THEN
            SELECT 'key ' || k.prefix INTO by_key FROM api_keys k WHERE k.id = NEW.cancel_requested_by;
            PERFORM syncway_timeline_note(NEW.id, 'cancel_requested', NEW.attempt, NULL,
                'cancel requested by ' || COALESCE(by_key, 'an operator'),
                jsonb_build_object('key_id', NEW.cancel_requested_by));
        END IF;
        IF NEW.status = 'cancelled' THEN
            PERFORM syncway_timeline_note(NEW.id, 'cancelled', NEW.attempt, OLD.lease_owner,
                'cancelled', counts);
        ELSIF NEW.status = 'failed' THEN
            PERFORM syncway_timeline_note(NEW.id, 'failed', NEW.attempt, OLD.lease_owner,
                'failed (' || COALESCE(NEW.error_category, 'unknown') || '): '
                    || COALESCE(NEW.error, 'no message'),
                jsonb_build_object('category', NEW.error_category, 'error', NEW.error) || counts);
        ELSIF NEW.status = 'completed' THEN
            PERFORM syncway_timeline_note(NEW.id, 'completed', NEW.attempt, OLD.lease_owner,
                'completed: ' || NEW.entities_inserted || ' inserted, '
                    || NEW.entities_updated || ' updated, ' || NEW.entities_deleted || ' deleted, '
                    || NEW.entities_failed || ' failed', counts);
        END IF;
        IF NEW.status IN ('completed', 'failed', 'cancelled')
           AND OLD.status NOT IN ('completed', 'failed', 'cancelled') THEN
            INSERT INTO job_ends (status) VALUES (NEW.status);
            INSERT INTO connection_runs AS r (source_connection_id, completed, failed, cancelled)
            VALUES (NEW.source_connection_id, (NEW.status = 'completed')::int,
                    (NEW.status = 'failed')::int, (NEW.status = 'cancelled')::int)
            ON CONFLICT (source_connection_id) DO UPDATE SET
                completed = r.completed + EXCLUDED.completed,
                failed = r.failed + EXCLUDED.failed,
                cancelled = r.cancelled + EXCLUDED.cancelled;
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- Lease renewals (the most frequent update) change none of these.
CREATE TRIGGER sync_jobs_timeline BEFORE UPDATE ON sync_jobs FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status
      OR OLD.attempt IS DISTINCT FROM NEW.attempt
      OR OLD.requeued_at IS DISTINCT FROM NEW.requeued_at
      OR OLD.retry_at IS DISTINCT FROM NEW.retry_at
      OR OLD.held_since IS DISTINCT FROM NEW.held_since
      OR OLD.entities_inserted IS DISTINCT FROM NEW.entities_inserted
      OR OLD.entities_updated IS DISTINCT FROM NEW.entities_updated
      OR OLD.entities_deleted IS DISTINCT FROM NEW.entities_deleted
      OR OLD.entities_failed IS DISTINCT FROM NEW.entities_failed)
EXECUTE FUNCTION syncway_job_changed();

-- Finished jobs by age, for the retention loop's sweep.
CREATE INDEX sync_jobs_finished ON sync_jobs (completed_at, id) WHERE completed_at IS NOT NULL;

-- Deleting a connection no longer removes its jobs by cascade inside the
-- request (a connection with a long history timed out). The connection row,
-- its cursor and its active job (at most one) go at once; the rest is
-- queued here for the retention loop. Nothing reads a job without its
-- connection: every API read and the claim join source_connections. What
-- the key held, a new job that could slip in beside a concurrent delete,
-- the trigger rule now holds itself: it locks the connection row FOR KEY
-- SHARE (new_jobs.sql), as the key's check did.
ALTER TABLE sync_jobs DROP CONSTRAINT sync_jobs_source_connection_id_fkey;

CREATE TABLE deleted_connections (
    id          uuid PRIMARY KEY,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION syncway_connection_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deleted_connections (id) VALUES (OLD.id) ON CONFLICT DO NOTHING;
    -- A message still queued for its active job is dropped, not dead-lettered.
    WITH gone AS (
        DELETE FROM sync_jobs WHERE source_connection_id = OLD.id AND active RETURNING id
    ), its_timeline AS (
        DELETE FROM job_timeline t USING gone WHERE t.job_id = gone.id
    )
    INSERT INTO deleted_jobs (job_id) SELECT id FROM gone ON CONFLICT DO NOTHING;
    DELETE FROM cursors WHERE source_connection_id = OLD.id;
    RETURN NULL;
END $$;

CREATE TRIGGER source_connections_deleted AFTER DELETE ON source_connections
FOR EACH ROW EXECUTE FUNCTION syncway_connection_deleted();

-- Tombstones are removed after a week, a batch at a time, oldest first.
CREATE INDEX deleted_jobs_by_age ON deleted_jobs (deleted_at);

-- Every request that changed something, or tried to. Never a secret, a
-- credential or a body.
CREATE TABLE audit_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    organization_id  uuid NOT NULL,
    key_id           uuid,
    key_prefix       text,
    role             text,
    action           text NOT NULL,
    target_type      text NOT NULL,
    target_id        text,
    status           integer NOT NULL,
    request_id       text,
    client_address   text
);
CREATE INDEX audit_log_by_organization ON audit_log (organization_id, id);
