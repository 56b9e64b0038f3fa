-- jobs::claim_many_fairly, first statement: serializes claims per
-- organization for the rest of the transaction.
-- $1 job_ids (uuid[]).
-- Locks are taken in organization order, so two batches cannot deadlock.
SELECT pg_advisory_xact_lock(1937, hashtext(org::text)) FROM (
    SELECT DISTINCT s.organization_id AS org FROM sync_jobs j
    JOIN source_connections s ON s.id = j.source_connection_id
    WHERE j.id = ANY($1) ORDER BY 1
) organizations
