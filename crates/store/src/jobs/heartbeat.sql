-- jobs::heartbeat: a worker renews its lease.
-- $1 job_id, $2 owner, $3 lease_seconds.
-- Matches only while this worker holds the job: no row, no lease.
UPDATE sync_jobs SET lease_expires_at = now() + make_interval(secs => $3)
WHERE id = $1 AND lease_owner = $2 AND status IN ('running', 'cancelling')
RETURNING status
