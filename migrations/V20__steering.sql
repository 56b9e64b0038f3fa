-- V20: steering (CONTRACT.md §11): pauses, why a job waits, caps per
-- source type, shared source budgets, a lane for manual runs, bulk tasks
-- and job search.

-- 1. Pauses. One row per pause: the whole deployment (scope 'all') or one
-- organization, set by the operator or by the organization's own key (an
-- organization may hold both; its key can lift only its own). A claim
-- reads this (tiny) table: a job of a paused scope
-- is held (as V14 holds jobs over their organization's share) until the
-- pause ends and the jobs are released, oldest first, fairly across
-- organizations.
CREATE TABLE pauses (
    scope                 text NOT NULL CHECK (scope IN ('all', 'organization')),
    organization_id       uuid,
    reason                text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL DEFAULT now(),
    created_by_key_prefix text,
    by_operator           boolean NOT NULL,
    CONSTRAINT pauses_scope_names_its_organization
        CHECK ((scope = 'organization') = (organization_id IS NOT NULL))
);
CREATE UNIQUE INDEX pauses_one_per_scope
    ON pauses (scope, COALESCE(organization_id, '00000000-0000-0000-0000-000000000000'),
               by_operator);

-- 2. Why a job waits: the code of what holds it (a held job: paused_all,
-- paused_organization, organization_cap, source_type_cap; a running job
-- waiting for its source's budget: source_budget). A job waiting out a
-- retry's backoff is known by retry_at, and a finished job waits for
-- nothing, whatever the column says.
ALTER TABLE sync_jobs ADD COLUMN waiting_reason text;
UPDATE sync_jobs SET waiting_reason = 'organization_cap' WHERE held_since IS NOT NULL;

-- Held jobs by why they are held, oldest first: a resume releases the
-- paused ones, a freed slot of a source type its oldest held job.
CREATE INDEX sync_jobs_held_by_reason ON sync_jobs (waiting_reason, held_since)
    WHERE held_since IS NOT NULL AND active;

-- Its change is a visible change (the job's wire form shows it), as a
-- retry's wait is.
DROP TRIGGER sync_jobs_version ON sync_jobs;
CREATE TRIGGER sync_jobs_version BEFORE UPDATE ON sync_jobs FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status
      OR OLD.entities_inserted IS DISTINCT FROM NEW.entities_inserted
      OR OLD.entities_updated IS DISTINCT FROM NEW.entities_updated
      OR OLD.entities_deleted IS DISTINCT FROM NEW.entities_deleted
      OR OLD.entities_failed IS DISTINCT FROM NEW.entities_failed
      OR OLD.error IS DISTINCT FROM NEW.error
      OR OLD.error_category IS DISTINCT FROM NEW.error_category
      OR OLD.error_details IS DISTINCT FROM NEW.error_details
      OR OLD.started_at IS DISTINCT FROM NEW.started_at
      OR OLD.completed_at IS DISTINCT FROM NEW.completed_at
      OR OLD.waiting_reason IS DISTINCT FROM NEW.waiting_reason
      OR OLD.retry_at IS DISTINCT FROM NEW.retry_at)
EXECUTE FUNCTION syncway_job_version();

-- 3. Search: a job carries its connection's organization and source type
-- (neither ever changes), and its outcome once it ended. `outcome` rather
-- than `status` is indexed: the claim (pending -> running) changes no
-- indexed value, so it stays a HOT update (V11).
ALTER TABLE sync_jobs
    ADD COLUMN organization_id uuid,
    ADD COLUMN short_name text,
    ADD COLUMN outcome text GENERATED ALWAYS AS (
        CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN status END) STORED;
UPDATE sync_jobs j SET organization_id = s.organization_id, short_name = s.short_name
FROM source_connections s WHERE s.id = j.source_connection_id;

-- Filled from the connection on insert, however the job is made: the
-- trigger rule (new_jobs.sql) writes them itself from the connection row
-- it joins, and the trigger fills them for any other insert.
CREATE FUNCTION syncway_job_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT organization_id, short_name INTO NEW.organization_id, NEW.short_name
    FROM source_connections WHERE id = NEW.source_connection_id;
    RETURN NEW;
END $$;
CREATE TRIGGER sync_jobs_owner BEFORE INSERT ON sync_jobs FOR EACH ROW
WHEN (NEW.organization_id IS NULL OR NEW.short_name IS NULL)
EXECUTE FUNCTION syncway_job_owner();

-- Newest first, by keyset (created_at, id): one index per filter.
CREATE INDEX sync_jobs_search ON sync_jobs (organization_id, created_at DESC, id DESC);
CREATE INDEX sync_jobs_search_outcome ON sync_jobs (organization_id, outcome, created_at DESC, id DESC)
    WHERE outcome IS NOT NULL;
CREATE INDEX sync_jobs_search_trigger ON sync_jobs (organization_id, trigger, created_at DESC, id DESC);
CREATE INDEX sync_jobs_search_source ON sync_jobs (organization_id, short_name, created_at DESC, id DESC);
CREATE INDEX sync_jobs_search_error ON sync_jobs (organization_id, error_category, created_at DESC, id DESC)
    WHERE error_category IS NOT NULL;
-- The operator's search over every organization.
CREATE INDEX sync_jobs_search_all ON sync_jobs (created_at DESC, id DESC);
CREATE INDEX sync_jobs_search_all_outcome ON sync_jobs (outcome, created_at DESC, id DESC)
    WHERE outcome IS NOT NULL;

-- 4. Shared source budgets: one row per budget (a host pattern of
-- limits.source_requests_per_second), holding the theoretical arrival
-- time of the next request (GCRA): each request moves it on by 1/rate and
-- waits until it is no further ahead of now than the burst allows.
CREATE TABLE source_budgets (
    pattern text PRIMARY KEY,
    tat     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- 5. Manual runs first: a job triggered through the API is published to
-- its own queue, which workers take from before the scheduled backlog.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('job', 'manual', 'control'));

-- 6. Bulk tasks: what a bulk action matched when it was submitted (its
-- items), worked through in batches by whichever process holds the task.
CREATE TABLE bulk_tasks (
    id              uuid PRIMARY KEY,
    -- The organization whose key submitted it; NULL for the operator's
    -- (all organizations).
    organization_id uuid,
    action          text NOT NULL CHECK (action IN ('cancel', 'retry', 'run')),
    filter          jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    matched         bigint NOT NULL,
    done            bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    -- When a process last worked on it: another takes over a task whose
    -- process went quiet.
    worked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bulk_tasks_running ON bulk_tasks (worked_at) WHERE status = 'running';

CREATE TABLE bulk_task_items (
    task_id uuid NOT NULL,
    n       integer NOT NULL,
    -- A job (cancel) or a connection (retry, run).
    target  uuid NOT NULL,
    PRIMARY KEY (task_id, n)
);

-- The jobs of a source type that are not held (running, or on their way
-- to a claim): what its cap (limits.max_running_jobs_per_source_type)
-- counts. No column a claim changes is in it.
CREATE INDEX sync_jobs_unheld_by_source ON sync_jobs (short_name)
    WHERE active AND held_since IS NULL;
