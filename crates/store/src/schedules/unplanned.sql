-- schedules::take_unplanned: connections with a schedule and no plan yet
-- (rows from before migration V7), at most $1, locked.
SELECT id, schedule_cron, schedule_timezone
FROM source_connections
WHERE schedule_cron IS NOT NULL AND NOT schedule_paused AND next_run_at IS NULL
LIMIT $1
FOR UPDATE SKIP LOCKED
