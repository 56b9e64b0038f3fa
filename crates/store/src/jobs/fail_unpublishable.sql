-- jobs::fail_unpublishable: the relay set the jobs' messages aside (the
-- broker refused them).
-- $1 job_ids, $2 reason (each job's error).
UPDATE sync_jobs SET status = 'failed', completed_at = now(),
    lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL,
    error = $2, error_details = jsonb_build_object('kind', 'unpublishable'),
    modified_at = now()
WHERE id = ANY($1) AND active
