-- retention::remove_old_jobs: one batch of the sweep of finished jobs.
-- $1 job_days, $2/$3 where the sweep got to (the last job looked at, or
-- nulls to start over), $4 the batch size, $5 keep_per_connection.
-- The candidates are read in (completed_at, id) order through
-- sync_jobs_finished. Active jobs have no completed_at: they are never
-- candidates. A candidate stays when it is one of the newest $5 + 1 jobs
-- of its connection (at most one job is active, and it is the newest, so
-- at least $5 finished ones stay) or the connection's last completed full
-- sync (the one `full_sync_every` reads).
-- Each connection among the candidates is looked up once, in the order
-- of sync_jobs_by_connection: its newest jobs are one leaf of that index,
-- read without visiting the table once vacuum has marked the pages.
WITH candidates AS MATERIALIZED (
    SELECT j.id, j.completed_at, j.created_at, j.source_connection_id
    FROM sync_jobs j
    WHERE j.completed_at IS NOT NULL
      AND j.completed_at < now() - make_interval(days => $1)
      AND (j.completed_at, j.id) > (COALESCE($2::timestamptz, '-infinity'),
                                    COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'))
    ORDER BY j.completed_at, j.id
    LIMIT $4
), kept AS MATERIALIZED (
    SELECT s.source_connection_id, newest.created_at, newest.id, full_sync.id AS full_sync_id
    FROM (SELECT DISTINCT source_connection_id FROM candidates) s
    -- The newest job that may go: with $5 = 0, the newest of all.
    LEFT JOIN LATERAL (
        SELECT k.created_at, k.id FROM sync_jobs k
        WHERE k.source_connection_id = s.source_connection_id
        ORDER BY k.created_at DESC, k.id DESC
        OFFSET CASE WHEN $5::bigint = 0 THEN 0 ELSE $5::bigint + 1 END LIMIT 1) newest ON true
    LEFT JOIN LATERAL (
        SELECT l.id FROM sync_jobs l
        WHERE l.source_connection_id = s.source_connection_id
          AND l.force_full_sync AND l.completed_at IS NOT NULL AND l.status = 'completed'
        ORDER BY l.completed_at DESC LIMIT 1) full_sync ON true
), doomed AS (
    SELECT c.id FROM candidates c JOIN kept k USING (source_connection_id)
    WHERE k.id IS NOT NULL
      AND (c.created_at, c.id) <= (k.created_at, k.id)
      AND c.id IS DISTINCT FROM k.full_sync_id
), jobs_gone AS (
    DELETE FROM sync_jobs j USING doomed d WHERE j.id = d.id RETURNING j.id
), timeline_gone AS (
    -- By the ids as an array: an index probe each, however many rows the
    -- planner expects (a join here may become a scan of the whole table).
    DELETE FROM job_timeline t WHERE t.job_id = ANY (ARRAY(SELECT id FROM jobs_gone)) RETURNING 1
), last AS (
    SELECT completed_at, id FROM candidates ORDER BY completed_at DESC, id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM jobs_gone) AS jobs,
       (SELECT count(*) FROM timeline_gone) AS timeline,
       (SELECT completed_at FROM last) AS last_at,
       (SELECT id FROM last) AS last_id
