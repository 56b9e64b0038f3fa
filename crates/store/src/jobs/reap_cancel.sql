-- jobs::reap: `cancelling` jobs whose worker died end `cancelled` (what
-- they committed is consistent). $1 job_ids.
UPDATE sync_jobs SET status = 'cancelled', completed_at = now(),
    lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL, modified_at = now()
WHERE id = ANY($1)
