-- jobs::claim_many and jobs::claim_many_fairly: a worker takes the jobs its
-- deliveries name.
-- $1 job_ids (uuid[], in delivery order), $2 owner (this worker's lease
-- owner name), $3 lease_seconds, $4 max_per_org (int; NULL: no fair share).
-- Each claim draws a lease token (V13): the fence of every write its run
-- makes.
-- `claimed` fences the rest: a job it did not take is answered from its row
-- as it was before this statement (every CTE reads one snapshot).
WITH input AS (
    SELECT * FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, n)
), fresh AS (
    -- The named jobs a claim may take: phase pending (nobody holds their
    -- rows but for a moment)...
    SELECT j.id, s.organization_id AS org, i.n FROM input i
    JOIN sync_jobs j ON j.id = i.id
    JOIN source_connections s ON s.id = j.source_connection_id
    WHERE job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at) = 'pending'
), taken_over AS (
    -- ...or expired or handed_back, and not locked by another transaction:
    -- a frozen or cut-off worker's holds its job's row until its session
    -- ends, and a claim never waits for that. (Only these are locked
    -- first: a lock is a write of its own, and most claims are of pending
    -- jobs.)
    SELECT j.id, s.organization_id AS org, i.n FROM input i
    JOIN sync_jobs j ON j.id = i.id
    JOIN source_connections s ON s.id = j.source_connection_id
    WHERE job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
          IN ('expired', 'handed_back')
    FOR UPDATE OF j SKIP LOCKED
), candidates AS (
    SELECT * FROM fresh UNION ALL SELECT * FROM taken_over
), leased_per_org AS (
    -- Under a fair share only: each candidate organization's leased jobs.
    SELECT s.organization_id AS org, count(*) AS leased FROM sync_jobs j
    JOIN source_connections s ON s.id = j.source_connection_id
    WHERE $4::int IS NOT NULL AND j.active
      AND job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at) = 'leased'
      AND s.organization_id IN (SELECT org FROM candidates)
    GROUP BY 1
), admitted AS (
    -- As many of each organization's candidates as its share has room for.
    SELECT ranked.id FROM (
        SELECT c.id, c.org, row_number() OVER (PARTITION BY c.org ORDER BY c.n) AS rank
        FROM candidates c
    ) ranked
    LEFT JOIN leased_per_org l ON l.org = ranked.org
    WHERE $4::int IS NULL OR ranked.rank + COALESCE(l.leased, 0) <= $4::int
), held_back AS (
    -- Over its organization's share: it waits here (V14) until a job of the
    -- organization stops running and releases it; its message is dropped.
    UPDATE sync_jobs j SET held_since = now(), held_org = c.org
    FROM candidates c
    WHERE j.id = c.id AND c.id NOT IN (SELECT id FROM admitted)
    RETURNING j.id
), claimed AS (
    UPDATE sync_jobs SET
        status = CASE WHEN status = 'cancelling' THEN 'cancelling' ELSE 'running' END,
        started_at = COALESCE(started_at, now()),
        attempt = attempt + 1,
        lease_owner = $2,
        lease_token = gen_random_uuid(),
        commit_seq = 0,
        lease_expires_at = now() + make_interval(secs => $3),
        retry_at = NULL,
        held_since = NULL,
        held_org = NULL,
        modified_at = now()
    WHERE id IN (SELECT id FROM admitted)
      -- Checked again on the row as it is now (another claim may have won).
      AND job_phase(status, lease_owner, lease_expires_at, retry_at)
          IN ('pending', 'expired', 'handed_back')
    RETURNING id, source_connection_id, status, force_full_sync, attempt, started_at,
              lease_token
)
SELECT i.id AS input_id, c.source_connection_id, c.status AS claimed_status,
       c.force_full_sync, c.attempt, c.started_at, c.lease_token,
       s.id IS NOT NULL AS connection_exists, s.organization_id, s.short_name, s.config,
       s.continuous,
       s.credentials, s.cursor_field, cur.value AS cursor_value,
       cur.entity_count AS stored_entities,
       h.id IS NOT NULL AS held_back,
       (SELECT count(*) FROM candidates k WHERE k.id = i.id) = 0 AS skipped,
       before.status AS status_before,
       job_phase(before.status, before.lease_owner, before.lease_expires_at, before.retry_at)
           AS phase_before
FROM input i
LEFT JOIN claimed c ON c.id = i.id
LEFT JOIN source_connections s ON s.id = c.source_connection_id
LEFT JOIN cursors cur ON cur.source_connection_id = c.source_connection_id
LEFT JOIN held_back h ON h.id = i.id
LEFT JOIN sync_jobs before ON before.id = i.id AND c.id IS NULL
ORDER BY i.n
