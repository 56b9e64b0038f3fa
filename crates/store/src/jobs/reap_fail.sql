-- jobs::reap: jobs whose attempts are used up end `failed`.
-- $1 job_ids, $2 errors (one per job, syncway_model::attempts::exhausted).
UPDATE sync_jobs j SET status = 'failed', completed_at = now(),
    lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL,
    error = f.error,
    error_details = jsonb_build_object('kind', 'exhausted', 'attempts', j.attempt),
    modified_at = now()
FROM unnest($1::uuid[], $2::text[]) AS f(id, error)
WHERE j.id = f.id
