-- jobs::trigger_many: many API triggers, each authenticated by its key.
-- $1 n (each request's place), $2 key_hash, $3 connection_id, $4 job_id,
-- $5 force_full_sync, $6 payload (the job message), $7 allow_mass_deletion
-- -- all arrays, one element per request.
-- The trigger rule (new_jobs.sql): only a job inserted gets a message.
WITH requests AS (
    SELECT * FROM unnest($1::int[], $2::bytea[], $3::uuid[], $4::uuid[],
                         $5::bool[], $6::bytea[], $7::bool[])
        AS r(n, key_hash, connection_id, job_id, force_full_sync, payload,
             allow_mass_deletion)
), authenticated AS (
    SELECT r.n, k.organization_id FROM requests r
    JOIN api_keys k ON k.key_hash = r.key_hash
    WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
), connections AS (
    SELECT r.n, s.id, s.needs_reauth FROM requests r
    JOIN authenticated a ON a.n = r.n
    JOIN source_connections s
        ON s.id = r.connection_id AND s.organization_id = a.organization_id
), runs AS (
    SELECT r.n, r.job_id, c.id AS connection_id, r.force_full_sync, 'api'::text AS trigger,
           NULL::timestamptz AS scheduled_for, r.payload, r.allow_mass_deletion
    FROM requests r JOIN connections c ON c.n = r.n
), {NEW_JOBS}
SELECT r.n, a.n IS NOT NULL AS authenticated, c.n IS NOT NULL AS connection_found,
       COALESCE(c.needs_reauth, false) AS needs_reauth, {JOB_COLUMNS}
FROM requests r
LEFT JOIN authenticated a ON a.n = r.n
LEFT JOIN connections c ON c.n = r.n
LEFT JOIN new_jobs j ON j.id = r.job_id
ORDER BY r.n
