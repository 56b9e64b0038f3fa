-- The trigger rule, in one place: spliced into jobs::trigger,
-- jobs::trigger_many and schedules::fire. A run asked of a connection is a
-- new job only when the connection needs no re-authentication and has no
-- active job (the unique index one_active_job_per_connection; a tick that
-- has its job already conflicts too), and a new job always comes with its
-- message in the outbox, in the same statement: the statement's messages
-- share one outbox row (V23), in the order of `runs`. It reads `runs` (n,
-- job_id, connection_id, force_full_sync, trigger, scheduled_for,
-- payload, allow_mass_deletion), which the statement defines, and makes `new_jobs` (the rows
-- inserted). A job triggered through the API is published to the
-- manual-runs queue (V20).
new_jobs AS (
    INSERT INTO sync_jobs (id, source_connection_id, force_full_sync, trigger, scheduled_for,
                           allow_mass_deletion, organization_id, short_name)
    SELECT r.job_id, r.connection_id, r.force_full_sync, r.trigger, r.scheduled_for,
           r.allow_mass_deletion, c.organization_id, c.short_name
    FROM runs r JOIN source_connections c ON c.id = r.connection_id
    WHERE NOT c.needs_reauth
    -- A fixed order, so that two statements wanting the same connections
    -- wait for each other instead of deadlocking.
    ORDER BY r.connection_id, r.n
    -- As the foreign key did before V17: a delete of the connection waits
    -- for this statement's transaction, and then removes the job with it.
    FOR KEY SHARE OF c
    ON CONFLICT DO NOTHING
    RETURNING *
), queued AS (
    INSERT INTO outbox (job_id, payload, kind, more_job_ids, more_payloads)
    SELECT ids[1], payloads[1], kind, ids[2:], payloads[2:]
    FROM (SELECT CASE WHEN j.trigger = 'api' THEN 'manual' ELSE 'job' END AS kind,
                 array_agg(j.id ORDER BY r.n) AS ids,
                 array_agg(r.payload ORDER BY r.n) AS payloads
          FROM new_jobs j JOIN runs r ON r.job_id = j.id
          GROUP BY 1) AS batch
)
