-- V23: one outbox row per statement that makes jobs, not one per job
-- (issue 30). A batch of API triggers, or a scheduler's ticks, writes its
-- messages as ONE row: job_id and payload are the first message, and
-- more_job_ids and more_payloads the rest, in order. The relay publishes a
-- row's messages together and deletes the row once the broker confirmed
-- every one, so a batch of n jobs costs the outbox one insert and one
-- delete instead of n of each. Every message of a row goes the same way
-- (kind, delay_ms), so the broker takes or refuses a row's messages alike;
-- a row is held or set aside as a whole. Rows written one per message
-- (retries, re-enqueues, held jobs let go, cancels) leave the arrays empty.
ALTER TABLE outbox
    ADD COLUMN more_job_ids  uuid[]  NOT NULL DEFAULT '{}',
    ADD COLUMN more_payloads bytea[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT outbox_batch_shape
        CHECK (cardinality(more_job_ids) = cardinality(more_payloads));

-- Every job with a message in the outbox, whichever place in its row it
-- has: what the reaper asks before it re-enqueues a job, and what the
-- backlog counts. The first message is found through outbox_job (V14);
-- the rest are few, as the outbox is drained within milliseconds while the
-- broker answers.
CREATE VIEW outbox_jobs AS
    SELECT id, job_id FROM outbox
    UNION ALL
    SELECT id, unnest(more_job_ids) FROM outbox WHERE more_job_ids <> '{}';
