-- jobs::release: a stopping worker hands its job back (phase handed_back).
-- $1 job_id, $2 lease token (the run's claim).
-- A handback is not a failed attempt: the attempt its claim added is taken
-- back, so the next claim's attempt is the same number again.
UPDATE sync_jobs SET lease_owner = NULL, lease_expires_at = now(),
    attempt = greatest(attempt - 1, 0), modified_at = now()
WHERE id = $1 AND lease_token = $2 AND lease_owner IS NOT NULL
  AND status IN ('running', 'cancelling')
