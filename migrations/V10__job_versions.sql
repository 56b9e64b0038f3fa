-- V10: every visible change of a job counts (CONTRACT.md §8).
--
-- version: 0 when inserted, one more on every update that changes what
-- the job's wire form shows (status, counts, error, times), whoever makes
-- it (worker, reaper, API). The job event streams use it as the event id,
-- so that a client resuming with Last-Event-ID is sent the state only when
-- it changed since. Lease renewals change nothing visible and do not count.
-- Not indexed, so updates stay HOT.
ALTER TABLE sync_jobs ADD COLUMN version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION syncway_job_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END $$;

CREATE TRIGGER sync_jobs_version BEFORE UPDATE ON sync_jobs FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status
      OR OLD.entities_inserted IS DISTINCT FROM NEW.entities_inserted
      OR OLD.entities_updated IS DISTINCT FROM NEW.entities_updated
      OR OLD.entities_deleted IS DISTINCT FROM NEW.entities_deleted
      OR OLD.entities_failed IS DISTINCT FROM NEW.entities_failed
      OR OLD.error IS DISTINCT FROM NEW.error
      OR OLD.error_category IS DISTINCT FROM NEW.error_category
      OR OLD.error_details IS DISTINCT FROM NEW.error_details
      OR OLD.started_at IS DISTINCT FROM NEW.started_at
      OR OLD.completed_at IS DISTINCT FROM NEW.completed_at)
EXECUTE FUNCTION syncway_job_version();
