-- V11: the claim (pending -> running) updates a job row in place again.
--
-- Postgres updates a row in place (HOT, no index writes) only when no
-- indexed column changes, and a partial index's predicate columns count.
-- V7's sync_jobs_last_full_sync (WHERE status = 'completed' ...) and V8's
-- sync_jobs_pending_by_age (WHERE status = 'pending') made `status` such a
-- column, so every claim wrote a new entry into every index of the table.
-- Their replacements have predicates on columns the claim does not change:
-- `completed_at` is set only when a job ends (which changes `active`, an
-- indexed column, anyway), and `active` is true both before and after a
-- claim. The queries add the conditions that let the planner use them.
DROP INDEX sync_jobs_last_full_sync;
CREATE INDEX sync_jobs_last_full_sync ON sync_jobs (source_connection_id, completed_at DESC)
    WHERE force_full_sync AND completed_at IS NOT NULL;

-- The oldest pending job: the active jobs by age (pending, running and
-- cancelling; the running ones are few, at most every worker's concurrency).
DROP INDEX sync_jobs_pending_by_age;
CREATE INDEX sync_jobs_active_by_age ON sync_jobs (created_at) WHERE active;
