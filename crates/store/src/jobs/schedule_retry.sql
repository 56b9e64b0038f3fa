-- jobs::schedule_retry: a transient failure with attempts left.
-- $1 job_id, $2 lease token (the run's claim), $3 delay_ms, $4 error, $5 error_details, $6 the job
-- message (outbox payload).
-- `waiting_job` fences the outbox row: only while this claim held the job.
-- The job's phase becomes retry_wait; the reaper counts from
-- lease_expires_at (the end of the wait) if the message is lost.
WITH waiting_job AS (
    UPDATE sync_jobs SET
        lease_owner = NULL,
        retry_at = now() + make_interval(secs => ($3::bigint / 1000.0)::float8),
        lease_expires_at = now() + make_interval(secs => ($3::bigint / 1000.0)::float8),
        error = $4, error_details = $5, modified_at = now()
    WHERE id = $1 AND lease_token = $2 AND lease_owner IS NOT NULL AND status = 'running'
    RETURNING id
)
INSERT INTO outbox (job_id, payload, kind, delay_ms)
SELECT id, $6, 'job', $3 FROM waiting_job
RETURNING job_id
