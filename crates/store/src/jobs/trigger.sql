-- jobs::trigger: one connection's run, as the API's create-with-sync asks.
-- $1 source_connection_id, $2 organization_id, $3 job_id, $4 force_full_sync,
-- $5 the job message (outbox payload).
-- The trigger rule (new_jobs.sql): no job (another is active, or the
-- connection needs re-authentication), no outbox row.
WITH connection AS (
    SELECT id, needs_reauth FROM source_connections
    WHERE id = $1 AND organization_id = $2
), runs AS (
    SELECT 1 AS n, $3::uuid AS job_id, id AS connection_id, $4::bool AS force_full_sync,
           'api'::text AS trigger, NULL::timestamptz AS scheduled_for, $5::bytea AS payload,
           false AS allow_mass_deletion
    FROM connection
), {NEW_JOBS}
SELECT connection.needs_reauth, {JOB_COLUMNS}
FROM connection LEFT JOIN new_jobs j ON true
