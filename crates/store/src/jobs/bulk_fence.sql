-- jobs::commit_bulk: the fence of a large batch's transaction. Locks the
-- job's row while this worker holds the job (the commit statement's own
-- fence), so that nobody can take the job over until the transaction ends.
-- $1 job_id, $2 owner.
SELECT 1 FROM sync_jobs
WHERE id = $1 AND lease_owner = $2 AND status IN ('running', 'cancelling')
FOR UPDATE
