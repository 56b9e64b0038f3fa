-- jobs::release_source_type: lets go the oldest jobs held by their source
-- type's cap (V20), fairly across organizations. The caller queues a
-- message for each in the same transaction.
-- $1 short_name, $2 how many at most.
WITH ranked AS (
    SELECT j.id, j.held_since,
           row_number() OVER (PARTITION BY j.organization_id ORDER BY j.held_since) AS turn
    FROM sync_jobs j
    WHERE j.waiting_reason = 'source_type_cap' AND j.short_name = $1
      AND j.held_since IS NOT NULL AND j.active
), picked AS (
    SELECT id FROM sync_jobs
    WHERE id IN (SELECT id FROM ranked ORDER BY turn, held_since LIMIT $2)
    FOR UPDATE SKIP LOCKED
)
UPDATE sync_jobs j SET held_since = NULL, held_org = NULL, waiting_reason = NULL,
    requeued_at = now()
FROM picked p WHERE j.id = p.id AND j.held_since IS NOT NULL
RETURNING j.id, j.source_connection_id
