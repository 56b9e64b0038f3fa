-- jobs::cancel_many: cancels many jobs at once (a bulk cancel, a pause
-- that cancels running jobs), as cancel.sql cancels one.
-- $1 job_ids (uuid[]), $2 organization_id (NULL: any organization's), $3
-- the control messages (bytea[], one per job id, in order), $4 the id of
-- the key that asked.
-- Returns the jobs it changed (a job already ending or ended is left).
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $3::bytea[]) AS i(id, control)
), cancelled_job AS (
    UPDATE sync_jobs j SET
        status = CASE WHEN job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
                           IN ('leased', 'expired') THEN 'cancelling' ELSE 'cancelled' END,
        completed_at = CASE WHEN job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
                           IN ('leased', 'expired') THEN NULL ELSE now() END,
        lease_expires_at = CASE WHEN job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
                           IN ('leased', 'expired') THEN j.lease_expires_at END,
        retry_at = NULL,
        cancel_requested_by = $4,
        modified_at = now()
    FROM input i
    WHERE j.id = i.id AND ($2::uuid IS NULL OR j.organization_id = $2)
      AND j.status IN ('pending', 'running')
    RETURNING j.id, j.status
), control AS (
    INSERT INTO outbox (job_id, payload, kind)
    SELECT c.id, i.control, 'control' FROM cancelled_job c JOIN input i ON i.id = c.id
    WHERE c.status = 'cancelling'
)
SELECT id FROM cancelled_job
