-- V14: waiting costs nothing.
--
-- A job held back by its organization's cap on running jobs used to be
-- published to a short delay queue and claimed again, and again, until a
-- slot was free: a backlog of 10,000 such jobs cost thousands of claims
-- and broker operations a second, doing nothing. Now it waits here: the
-- claim marks it held (held_since, and the organization it waits for) and
-- its message is dropped; when a job of that organization stops running,
-- the worker releases as many of the oldest held jobs as there is room
-- for (one outbox message each), and the reaper does the same for any
-- organization whose slots freed without a worker to say so.
ALTER TABLE sync_jobs
    ADD COLUMN held_since timestamptz,
    ADD COLUMN held_org uuid;

-- An organization's held jobs, oldest first. Only held jobs are in it, so
-- the claim of any other job stays a HOT update.
CREATE INDEX sync_jobs_held ON sync_jobs (held_org, held_since)
    WHERE held_since IS NOT NULL AND active;

-- The reaper asks whether a job still has a message in the outbox.
CREATE INDEX outbox_job ON outbox (job_id);
