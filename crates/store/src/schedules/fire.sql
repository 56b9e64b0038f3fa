-- schedules::fire: the due connections' ticks, in one statement. For each
-- input row: a scheduled job and its outbox message when job_id is given,
-- by the trigger rule (new_jobs.sql: not for a connection that needs
-- re-authentication, has an active job, or whose tick has its job
-- already), and the connection's next plan.
-- $1 connection ids, $2 job ids (NULL: no run), $3 force_full_sync,
-- $4 job messages, $5 scheduled_for (the tick), $6 next tick, $7 next due.
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bool[], $4::bytea[],
                         $5::timestamptz[], $6::timestamptz[], $7::timestamptz[])
        WITH ORDINALITY AS i(connection_id, job_id, force_full_sync, message,
                             scheduled_for, next_tick, next_run, n)
), connection AS (
    SELECT c.id, c.needs_reauth FROM source_connections c JOIN input i ON c.id = i.connection_id
), runs AS (
    SELECT i.n, i.job_id, i.connection_id, i.force_full_sync, 'schedule'::text AS trigger,
           i.scheduled_for, i.message AS payload, false AS allow_mass_deletion
    FROM input i WHERE i.job_id IS NOT NULL
), {NEW_JOBS}, moved AS (
    UPDATE source_connections c SET schedule_tick_at = i.next_tick, next_run_at = i.next_run
    FROM input i WHERE c.id = i.connection_id
)
SELECT i.connection_id, c.needs_reauth, n.id IS NOT NULL AS triggered,
       EXISTS (SELECT 1 FROM sync_jobs d
               WHERE d.source_connection_id = i.connection_id
                 AND d.scheduled_for = i.scheduled_for) AS tick_had_its_job
FROM input i
JOIN connection c ON c.id = i.connection_id
LEFT JOIN new_jobs n ON n.id = i.job_id
ORDER BY i.n
