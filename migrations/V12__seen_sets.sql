-- V12: a full sync remembers what it saw in a narrow table, not by
-- rewriting every entity row it saw.
--
-- Until now a full sync stamped each entity it saw with its job id
-- (entities.last_seen_job), so that when it completed, the entities
-- without the stamp were the ones the source no longer has. That rewrote
-- every unchanged row (a new 600-byte tuple, WAL and an index entry each),
-- which made a full sync with nothing changed slower than the first one.
--
-- Now each batch a full sync commits adds ONE row here: the ids it saw, as
-- an array, beside the entity writes in the same transaction (so it is as
-- durable as they are). When the sync completes, the entities of the
-- connection not in any of its run's rows are deleted, and its rows go.
--
-- run_id: one per claim of the job (the worker draws it). A full sync that
-- is resumed (handed back, retried, taken over) reads the source from the
-- start again, and only what this run saw counts: an entity an earlier run
-- saw and the source has deleted since is deleted too. Rows of earlier runs
-- go when the job ends; the reaper removes those of jobs that ended (or
-- were deleted) without a worker's final commit. No foreign key, as on the
-- other hot tables (ARCHITECTURE.md, Decisions).
CREATE TABLE full_sync_seen (
    job_id     uuid NOT NULL,
    run_id     uuid NOT NULL,
    batch      bigint GENERATED ALWAYS AS IDENTITY,
    entity_ids text[] COLLATE "C" NOT NULL,
    PRIMARY KEY (job_id, run_id, batch)
);

ALTER TABLE entities DROP COLUMN last_seen_job;
