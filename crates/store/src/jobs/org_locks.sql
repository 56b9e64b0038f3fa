-- jobs::claim_many_limited, first statement: serializes claims per
-- organization (under a fair share) and per capped source type for the
-- rest of the transaction.
-- $1 job_ids (uuid[]), $2 lock organizations (bool), $3 capped source
-- types (text[]).
-- Locks are taken in one order (kind, then key), so two batches cannot
-- deadlock.
SELECT pg_advisory_xact_lock(kind, key) FROM (
    SELECT DISTINCT 1937 AS kind, hashtext(j.organization_id::text) AS key FROM sync_jobs j
    WHERE $2 AND j.id = ANY($1)
    UNION
    SELECT DISTINCT 1939, hashtext(j.short_name) FROM sync_jobs j
    WHERE j.id = ANY($1) AND j.short_name = ANY($3)
    ORDER BY 1, 2
) locks
