-- jobs::fail_unpublishable: the relay set the job's message aside (the
-- broker refused it).
-- $1 job_id, $2 reason (the job's error).
UPDATE sync_jobs SET status = 'failed', completed_at = now(),
    lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL,
    error = $2, error_details = jsonb_build_object('kind', 'unpublishable'),
    modified_at = now()
WHERE id = $1 AND active
