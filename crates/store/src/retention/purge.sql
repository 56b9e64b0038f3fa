-- retention::purge_deleted_connection: one batch of the oldest deleted
-- connection's leftovers. $1 the batch size.
-- Entities first; once none are left, its jobs and their timelines (the
-- jobs' ids become tombstones); once none are left, its counters and its
-- entry. `connection` is null when no deleted connection waits.
WITH target AS (
    SELECT id FROM deleted_connections ORDER BY deleted_at, id LIMIT 1
), doomed_entities AS (
    SELECT e.source_connection_id, e.entity_id FROM entities e JOIN target t
        ON e.source_connection_id = t.id
    LIMIT $1
), entities_gone AS (
    DELETE FROM entities e USING doomed_entities d
    WHERE e.source_connection_id = d.source_connection_id AND e.entity_id = d.entity_id
    RETURNING 1
), doomed_jobs AS (
    SELECT j.id FROM sync_jobs j JOIN target t ON j.source_connection_id = t.id
    WHERE NOT EXISTS (SELECT 1 FROM doomed_entities)
    LIMIT $1
), jobs_gone AS (
    DELETE FROM sync_jobs j USING doomed_jobs d WHERE j.id = d.id RETURNING j.id
), timeline_gone AS (
    -- By the ids as an array: an index probe each, however many rows the
    -- planner expects (a join here may become a scan of the whole table).
    DELETE FROM job_timeline t WHERE t.job_id = ANY (ARRAY(SELECT id FROM jobs_gone)) RETURNING 1
), tombstones AS (
    INSERT INTO deleted_jobs (job_id) SELECT id FROM jobs_gone ON CONFLICT DO NOTHING
), runs_gone AS (
    DELETE FROM connection_runs r USING target t
    WHERE r.source_connection_id = t.id
      AND NOT EXISTS (SELECT 1 FROM doomed_entities) AND NOT EXISTS (SELECT 1 FROM doomed_jobs)
), connection_gone AS (
    DELETE FROM deleted_connections c USING target t
    WHERE c.id = t.id
      AND NOT EXISTS (SELECT 1 FROM doomed_entities) AND NOT EXISTS (SELECT 1 FROM doomed_jobs)
    RETURNING 1
)
SELECT (SELECT id FROM target) AS connection,
       (SELECT count(*) FROM entities_gone) AS entities,
       (SELECT count(*) FROM jobs_gone) AS jobs,
       (SELECT count(*) FROM timeline_gone) AS timeline,
       (SELECT count(*) FROM connection_gone) AS connections
