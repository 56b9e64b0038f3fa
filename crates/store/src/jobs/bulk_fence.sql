-- jobs::commit_bulk: the fence of a large batch's transaction. Locks the
-- job's row, so that nobody can take the job over until the transaction
-- ends, and says whether this claim holds it with the commit before this
-- one applied (the commit statement's own fence), or whether this very
-- commit was applied already (a replay, see V13).
-- $1 job_id, $2 lease token (the run's claim), $3 the commit's number.
SELECT lease_owner IS NOT NULL AND status IN ('running', 'cancelling')
           AND commit_seq = $3::bigint - 1 AS ours,
       commit_seq = $3::bigint AS applied, status
FROM sync_jobs
WHERE id = $1 AND lease_token = $2
FOR UPDATE
