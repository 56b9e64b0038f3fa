-- V7: schedules. Each connection's next due time lives here, so that any
-- number of schedulers (one in every worker process) share it, and nothing
-- about a schedule is kept in memory or lost across restarts.
--
-- schedule_tick_at is the cron tick the connection waits for (UTC);
-- next_run_at is when it is due: that tick plus the connection's stable
-- jitter. Both are NULL when there is no schedule or it is paused; a row
-- with a cron and no next_run_at is planned by the next scheduler pass
-- (rows from before this migration, or whose plan could not be made).
ALTER TABLE source_connections
    ADD COLUMN schedule_timezone       text NOT NULL DEFAULT 'UTC',
    ADD COLUMN full_sync_every_seconds bigint CHECK (full_sync_every_seconds > 0),
    ADD COLUMN schedule_paused         boolean NOT NULL DEFAULT false,
    ADD COLUMN schedule_tick_at        timestamptz,
    ADD COLUMN next_run_at             timestamptz;

-- Continuous connections gain the default schedule: every five minutes,
-- and a full sync every 24 hours.
UPDATE source_connections
SET schedule_cron = '*/5 * * * *', full_sync_every_seconds = 86400
WHERE continuous AND schedule_cron IS NULL;

-- What a scheduler pass looks for: the due rows, oldest first, and the
-- rows still to plan.
CREATE INDEX source_connections_due ON source_connections (next_run_at)
    WHERE next_run_at IS NOT NULL;
CREATE INDEX source_connections_unplanned ON source_connections (id)
    WHERE schedule_cron IS NOT NULL AND NOT schedule_paused AND next_run_at IS NULL;

-- Who asked for a job, and the tick a scheduled one ran for. A tick is at
-- most one job: the unique key holds whatever the schedulers' locks do.
ALTER TABLE sync_jobs
    ADD COLUMN trigger       text NOT NULL DEFAULT 'api' CHECK (trigger IN ('api', 'schedule')),
    ADD COLUMN scheduled_for timestamptz,
    ADD CONSTRAINT scheduled_jobs_have_a_tick CHECK ((trigger = 'schedule') = (scheduled_for IS NOT NULL));
CREATE UNIQUE INDEX one_job_per_tick ON sync_jobs (source_connection_id, scheduled_for)
    WHERE scheduled_for IS NOT NULL;

-- The last completed forced full sync of a connection, found without
-- reading its whole history (full_sync_every).
CREATE INDEX sync_jobs_last_full_sync ON sync_jobs (source_connection_id, completed_at DESC)
    WHERE status = 'completed' AND force_full_sync;
