-- jobs::release_unpaused: lets go jobs held by a pause (V20) that has
-- ended, fairly across organizations: each organization's oldest first,
-- then its second oldest, and so on. The caller queues a message for each
-- in the same transaction. Rows another transaction holds are skipped.
-- $1 how many at most.
WITH ranked AS (
    SELECT j.id, j.held_since,
           row_number() OVER (PARTITION BY j.organization_id ORDER BY j.held_since) AS turn
    FROM sync_jobs j
    WHERE j.waiting_reason IN ('paused_all', 'paused_organization')
      AND j.held_since IS NOT NULL AND j.active
      AND NOT EXISTS (SELECT 1 FROM pauses p
                      WHERE p.scope = 'all' OR p.organization_id = j.organization_id)
), picked AS (
    SELECT id FROM sync_jobs
    WHERE id IN (SELECT id FROM ranked ORDER BY turn, held_since LIMIT $1)
    FOR UPDATE SKIP LOCKED
)
UPDATE sync_jobs j SET held_since = NULL, held_org = NULL, waiting_reason = NULL,
    requeued_at = now()
FROM picked p WHERE j.id = p.id AND j.held_since IS NOT NULL
RETURNING j.id, j.source_connection_id
