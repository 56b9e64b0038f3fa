-- jobs::reap, first statement: the active jobs nobody works on and nothing
-- will deliver, locked for this transaction (rows another reaper holds are
-- skipped, so any number of reapers can run).
-- $1 grace_seconds (one lease), $2 requeue_after_seconds, $3 how many
-- pending jobs to take (their messages are gone: see `jobs::reap`).
-- Phase expired or handed_back for longer than the grace: no live worker
-- has it, and a redelivered message would have claimed it by now; at most
-- once per grace, so that however often its workers die, it is back in a
-- worker's hands within lease + grace + the reap interval of each death
-- (a copy dropped as a duplicate while a dead worker's lease still looked
-- live is made good by the next pass, not one requeue_after later).
-- Phase pending for longer than requeue_after, the oldest first, only as
-- many as the caller found messages missing, and each at most once per
-- requeue_after. A held job (V14) waits for a release, not for this; a
-- job with a message still in the outbox is left alone.
WITH leases AS (
 SELECT id, source_connection_id, status, attempt FROM sync_jobs j
 WHERE active AND held_since IS NULL
   AND job_phase(status, lease_owner, lease_expires_at, retry_at) IN ('expired', 'handed_back')
   AND COALESCE(lease_expires_at, modified_at) < now() - make_interval(secs => $1)
   AND (requeued_at IS NULL OR requeued_at < now() - make_interval(secs => $1))
   AND NOT EXISTS (SELECT 1 FROM outbox_jobs o WHERE o.job_id = j.id)
 ORDER BY created_at
 LIMIT 500
 FOR UPDATE SKIP LOCKED
), pending AS (
 SELECT id, source_connection_id, status, attempt FROM sync_jobs j
 WHERE active AND held_since IS NULL AND status = 'pending'
   AND created_at < now() - make_interval(secs => $2)
   AND (requeued_at IS NULL OR requeued_at < now() - make_interval(secs => $2))
   AND NOT EXISTS (SELECT 1 FROM outbox_jobs o WHERE o.job_id = j.id)
 ORDER BY created_at
 LIMIT $3
 FOR UPDATE SKIP LOCKED
)
SELECT * FROM leases UNION ALL SELECT * FROM pending
