-- jobs::reap, first statement: the active jobs nobody works on and nothing
-- will deliver, locked for this transaction (rows another reaper holds are
-- skipped, so any number of reapers can run).
-- $1 grace_seconds (one lease), $2 requeue_after_seconds.
-- Phase expired or handed_back for longer than the grace: no live worker
-- has it, and a redelivered message would have claimed it by now. Phase
-- pending for longer than requeue_after: its message may be lost. A job
-- with a message still in the outbox is left alone, and one is re-enqueued
-- at most once per requeue_after.
SELECT id, source_connection_id, status, attempt FROM sync_jobs j
WHERE active
  AND ((job_phase(status, lease_owner, lease_expires_at, retry_at) IN ('expired', 'handed_back')
        AND COALESCE(lease_expires_at, modified_at) < now() - make_interval(secs => $1))
       OR (status = 'pending' AND created_at < now() - make_interval(secs => $2)))
  AND (requeued_at IS NULL OR requeued_at < now() - make_interval(secs => $2))
  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id)
ORDER BY created_at
LIMIT 500
FOR UPDATE SKIP LOCKED
