-- jobs::cancel: a client cancels a job.
-- $1 job_id, $2 source_connection_id, $3 organization_id, $4 the control
-- message (outbox payload), $5 the id of the key that asked (its timeline
-- names it; null when no key did).
-- `cancelled_job` fences the rest: only a job it changed to `cancelling`
-- gets a control message.
-- A job no worker holds (phase pending, retry_wait or handed_back) ends
-- `cancelled` at once: nobody must be told, and what it committed is
-- consistent. A claim racing this waits for the row, then finds it ended.
-- A leased (or expired) one becomes `cancelling`, and its worker is told
-- through the control exchange.
WITH cancelled_job AS (
    UPDATE sync_jobs j SET
        status = CASE WHEN job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
                           IN ('leased', 'expired') THEN 'cancelling' ELSE 'cancelled' END,
        completed_at = CASE WHEN job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
                           IN ('leased', 'expired') THEN NULL ELSE now() END,
        lease_expires_at = CASE WHEN job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
                           IN ('leased', 'expired') THEN j.lease_expires_at END,
        retry_at = NULL,
        cancel_requested_by = $5,
        modified_at = now()
    FROM source_connections s
    WHERE j.id = $1 AND j.source_connection_id = $2
      AND s.id = j.source_connection_id AND s.organization_id = $3
      AND j.status IN ('pending', 'running')
    RETURNING j.*
), control AS (
    INSERT INTO outbox (job_id, payload, kind)
    SELECT id, $4, 'control' FROM cancelled_job WHERE status = 'cancelling'
)
SELECT {JOB_COLUMNS} FROM cancelled_job j
