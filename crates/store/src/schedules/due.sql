-- schedules::take_due: the connections whose next run is due by $1 (the
-- scheduler's clock), oldest first, at most $2, locked for this
-- transaction. Rows another scheduler (or a job commit) holds are skipped:
-- any number of schedulers share the work, and each row is fired once.
-- last_full_sync_at reads one index entry (sync_jobs_last_full_sync, whose
-- predicate `completed_at IS NOT NULL` is spelled out below): the
-- tick the last completed forced full sync ran for, or, when an API call
-- forced it, when it completed (the schedulers' clock, where there is one).
SELECT c.id, c.schedule_cron, c.schedule_timezone, c.schedule_tick_at, c.next_run_at,
       c.continuous, c.full_sync_every_seconds, c.created_at,
       (SELECT COALESCE(j.scheduled_for, j.completed_at) FROM sync_jobs j
        WHERE j.source_connection_id = c.id AND j.status = 'completed' AND j.force_full_sync
          AND j.completed_at IS NOT NULL
        ORDER BY j.completed_at DESC LIMIT 1) AS last_full_sync_at
FROM source_connections c
WHERE c.next_run_at <= $1
ORDER BY c.next_run_at
LIMIT $2
FOR UPDATE OF c SKIP LOCKED
