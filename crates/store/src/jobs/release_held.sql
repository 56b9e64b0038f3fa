-- jobs::release_held: lets an organization's oldest held jobs (V14) go:
-- they are no longer held, and the caller queues a message for each in the
-- same transaction. Rows another transaction holds are skipped.
-- $1 organization_id, $2 how many at most.
WITH picked AS (
    SELECT id FROM sync_jobs
    WHERE held_org = $1 AND held_since IS NOT NULL AND active
    ORDER BY held_since
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE sync_jobs j SET held_since = NULL, held_org = NULL, requeued_at = now()
FROM picked p WHERE j.id = p.id
RETURNING j.id, j.source_connection_id
