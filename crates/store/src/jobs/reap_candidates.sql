-- jobs::reap, first statement: the active jobs nobody works on and nothing
-- will deliver, locked for this transaction (rows another reaper holds are
-- skipped, so any number of reapers can run).
-- $1 grace_seconds (one lease), $2 requeue_after_seconds.
-- Phase expired or handed_back for longer than the grace: no live worker
-- has it, and a redelivered message would have claimed it by now. Phase
-- pending for longer than requeue_after: its message may be lost. A job
-- with a message still in the outbox is left alone. A pending job is
-- re-enqueued at most once per requeue_after; an expired or handed-back
-- one at most once per grace, so that however often its workers die, it is
-- back in a worker's hands within lease + grace + the reap interval of each
-- death (a copy dropped as a duplicate while a dead worker's lease still
-- looked live is made good by the next pass, not one requeue_after later).
SELECT id, source_connection_id, status, attempt FROM sync_jobs j
WHERE active
  AND ((job_phase(status, lease_owner, lease_expires_at, retry_at) IN ('expired', 'handed_back')
        AND COALESCE(lease_expires_at, modified_at) < now() - make_interval(secs => $1))
       OR (status = 'pending' AND created_at < now() - make_interval(secs => $2)))
  AND (requeued_at IS NULL
       OR requeued_at < now() - make_interval(secs => CASE WHEN status = 'pending' THEN $2 ELSE $1 END))
  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id)
ORDER BY created_at
LIMIT 500
FOR UPDATE SKIP LOCKED
