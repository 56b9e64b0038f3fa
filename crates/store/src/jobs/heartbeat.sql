-- jobs::heartbeat: a run renews its lease.
-- $1 job_id, $2 lease token (the run's claim), $3 lease_seconds.
-- Matches only while this claim holds the job: no row, no lease.
UPDATE sync_jobs SET lease_expires_at = now() + make_interval(secs => $3)
WHERE id = $1 AND lease_token = $2 AND lease_owner IS NOT NULL
  AND status IN ('running', 'cancelling')
RETURNING status
