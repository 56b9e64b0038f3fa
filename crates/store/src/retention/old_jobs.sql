-- retention::remove_old_jobs: one batch of the sweep of finished jobs.
-- $1 job_days, $2/$3 where the sweep got to (the last job looked at, or
-- nulls to start over), $4 the batch size, $5 keep_per_connection.
-- The candidates are read in (completed_at, id) order through
-- sync_jobs_finished; a candidate stays when it is one of the newest $5
-- finished jobs of its connection or the connection's last completed full
-- sync (the one `full_sync_every` reads). Active jobs have no completed_at:
-- they are never candidates.
WITH candidates AS (
    SELECT j.id, j.completed_at, j.source_connection_id
    FROM sync_jobs j
    WHERE j.completed_at IS NOT NULL
      AND j.completed_at < now() - make_interval(days => $1)
      AND (j.completed_at, j.id) > (COALESCE($2::timestamptz, '-infinity'),
                                    COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000'))
    ORDER BY j.completed_at, j.id
    LIMIT $4
), doomed AS (
    SELECT c.id FROM candidates c
    WHERE NOT EXISTS (
            SELECT 1 FROM (
                SELECT k.id FROM sync_jobs k
                WHERE k.source_connection_id = c.source_connection_id AND NOT k.active
                ORDER BY k.created_at DESC, k.id DESC
                LIMIT $5) newest
            WHERE newest.id = c.id)
      AND c.id IS DISTINCT FROM (
            SELECT l.id FROM sync_jobs l
            WHERE l.source_connection_id = c.source_connection_id
              AND l.force_full_sync AND l.completed_at IS NOT NULL AND l.status = 'completed'
            ORDER BY l.completed_at DESC LIMIT 1)
), jobs_gone AS (
    DELETE FROM sync_jobs j USING doomed d WHERE j.id = d.id RETURNING j.id
), timeline_gone AS (
    DELETE FROM job_timeline t USING jobs_gone g WHERE t.job_id = g.id RETURNING 1
), last AS (
    SELECT completed_at, id FROM candidates ORDER BY completed_at DESC, id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM jobs_gone) AS jobs,
       (SELECT count(*) FROM timeline_gone) AS timeline,
       (SELECT completed_at FROM last) AS last_at,
       (SELECT id FROM last) AS last_id
