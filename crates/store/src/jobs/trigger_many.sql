-- jobs::trigger_many: many API triggers, each authenticated by its key.
-- $1 n (each request's place), $2 key_hash, $3 connection_id, $4 job_id,
-- $5 force_full_sync, $6 payload (the job message), $7 allow_mass_deletion,
-- $8 request_id, $9 client_address -- all arrays, one element per request.
-- The trigger rule (new_jobs.sql): only a job inserted gets a message.
-- Each authenticated request is recorded in the audit log here, with the
-- status the API answers it with (routes/jobs.rs): no extra round trip.
WITH requests AS (
    SELECT * FROM unnest($1::int[], $2::bytea[], $3::uuid[], $4::uuid[],
                         $5::bool[], $6::bytea[], $7::bool[], $8::text[], $9::text[])
        AS r(n, key_hash, connection_id, job_id, force_full_sync, payload,
             allow_mass_deletion, request_id, client_address)
), authenticated AS (
    SELECT r.n, k.organization_id, k.id AS key_id, k.prefix, k.role FROM requests r
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
), {NEW_JOBS}, audited AS (
    INSERT INTO audit_log (organization_id, key_id, key_prefix, role, action, target_type,
                           target_id, status, request_id, client_address)
    SELECT a.organization_id, a.key_id, a.prefix, a.role, 'source_connection.run',
           'source_connection', r.connection_id::text,
           CASE WHEN c.n IS NULL THEN 404 WHEN j.id IS NULL THEN 409 ELSE 200 END,
           r.request_id, r.client_address
    FROM requests r
    JOIN authenticated a ON a.n = r.n
    LEFT JOIN connections c ON c.n = r.n
    LEFT JOIN new_jobs j ON j.id = r.job_id
    ORDER BY r.n
)
SELECT r.n, a.n IS NOT NULL AS authenticated, c.n IS NOT NULL AS connection_found,
       COALESCE(c.needs_reauth, false) AS needs_reauth, {JOB_COLUMNS}
FROM requests r
LEFT JOIN authenticated a ON a.n = r.n
LEFT JOIN connections c ON c.n = r.n
LEFT JOIN new_jobs j ON j.id = r.job_id
ORDER BY r.n
