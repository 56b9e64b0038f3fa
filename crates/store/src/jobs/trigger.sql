-- jobs::trigger: one connection's run, as the API's create-with-sync asks.
-- $1 source_connection_id, $2 organization_id, $3 job_id, $4 force_full_sync,
-- $5 the job message (outbox payload).
-- `new_job` fences the rest: no job (another is active, or the connection
-- needs re-authentication), no outbox row.
WITH connection AS (
    SELECT id, needs_reauth FROM source_connections
    WHERE id = $1 AND organization_id = $2
), new_job AS (
    INSERT INTO sync_jobs (id, source_connection_id, force_full_sync)
    SELECT $3, id, $4 FROM connection WHERE NOT needs_reauth
    ON CONFLICT (source_connection_id) WHERE active DO NOTHING
    RETURNING *
), queued AS (
    INSERT INTO outbox (job_id, payload) SELECT id, $5 FROM new_job
)
SELECT connection.needs_reauth, {JOB_COLUMNS}
FROM connection LEFT JOIN new_job j ON true
