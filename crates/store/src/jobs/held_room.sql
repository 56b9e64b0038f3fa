-- jobs::release_room: the organizations with held jobs (V14), each with the
-- room its share has left: the cap less its leased jobs and its pending
-- jobs that are not held (released or triggered: on their way to a claim).
-- $1 the cap (max running jobs per organization).
-- The organizations are found by skipping through the held index, one
-- probe each, however many jobs they hold.
WITH RECURSIVE held AS (
    (SELECT held_org AS org FROM sync_jobs
     WHERE held_since IS NOT NULL AND active ORDER BY held_org LIMIT 1)
    UNION ALL
    SELECT (SELECT held_org FROM sync_jobs
            WHERE held_since IS NOT NULL AND active AND held_org > h.org
            ORDER BY held_org LIMIT 1)
    FROM held h WHERE h.org IS NOT NULL
)
SELECT h.org, $1::int - count(j.id) FILTER (
           WHERE job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at) = 'leased'
              OR (j.status = 'pending' AND j.held_since IS NULL)) AS room
FROM held h
JOIN source_connections s ON s.organization_id = h.org
LEFT JOIN sync_jobs j ON j.source_connection_id = s.id AND j.active
WHERE h.org IS NOT NULL
GROUP BY h.org
