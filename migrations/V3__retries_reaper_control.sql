-- Retries, the reaper and cancel fan-out.
--
-- sync_jobs.attempt now counts the runs that count against
-- SYNCWAY_RETRY__MAX_ATTEMPTS: every claim adds one, and a shutdown handback
-- (which is not a failure) takes its one back.
--
-- retry_at: a job waiting out a retry backoff (running, no lease owner) is
-- not claimed before this time; its message is in a delay queue meanwhile.
-- requeued_at: when the reaper last re-enqueued the job, so that it does so
-- again only after a while (the message may sit behind a backlog).
ALTER TABLE sync_jobs
    ADD COLUMN retry_at    timestamptz,
    ADD COLUMN requeued_at timestamptz;

-- Outbox rows are job messages (to the jobs queue, or after delay_ms to a
-- delay queue that dead-letters back into it) or control messages (cancel),
-- fanned out to every worker.
ALTER TABLE outbox
    ADD COLUMN kind     text NOT NULL DEFAULT 'job' CHECK (kind IN ('job', 'control')),
    ADD COLUMN delay_ms bigint NOT NULL DEFAULT 0 CHECK (delay_ms >= 0);
