-- tasks::work (retry, run): one run of each connection, as the API's
-- trigger makes it (trigger 'api'), by the trigger rule (new_jobs.sql).
-- $1 connection ids (uuid[]), $2 job ids (uuid[]), $3 job messages
-- (bytea[]), $4 organization_id (NULL: any organization's).
WITH runs AS (
    SELECT i.n, i.job_id, i.connection_id, false AS force_full_sync, 'api'::text AS trigger,
           NULL::timestamptz AS scheduled_for, i.payload, false AS allow_mass_deletion
    FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) WITH ORDINALITY
         AS i(connection_id, job_id, payload, n)
    JOIN source_connections s ON s.id = i.connection_id
    WHERE $4::uuid IS NULL OR s.organization_id = $4
), {NEW_JOBS}
SELECT id FROM new_jobs
