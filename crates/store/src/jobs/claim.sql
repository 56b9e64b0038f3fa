-- jobs::claim_many and jobs::claim_many_fairly: a worker takes the jobs its
-- deliveries name.
-- $1 job_ids (uuid[], in delivery order), $2 owner (this worker's lease
-- owner name), $3 lease_seconds, $4 max_per_org (int; NULL: no fair share),
-- $5 the source types with a cap (text[]), $6 their caps (int[]).
-- A job that may not start now is held (V14) with the reason (V20): its
-- deployment or organization is paused, or its organization or source
-- type runs as many jobs as allowed.
-- Each claim draws a lease token (V13): the fence of every write its run
-- makes.
-- `claimed` fences the rest: a job it did not take is answered from its row
-- as it was before this statement (every CTE reads one snapshot).
WITH input AS (
    SELECT * FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, n)
), fresh AS (
    -- The named jobs a claim may take: phase pending (nobody holds their
    -- rows but for a moment)...
    SELECT j.id, s.organization_id AS org, s.short_name, i.n FROM input i
    JOIN sync_jobs j ON j.id = i.id
    JOIN source_connections s ON s.id = j.source_connection_id
    WHERE job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at) = 'pending'
), taken_over AS (
    -- ...or expired or handed_back, and not locked by another transaction:
    -- a frozen or cut-off worker's holds its job's row until its session
    -- ends, and a claim never waits for that. (Only these are locked
    -- first: a lock is a write of its own, and most claims are of pending
    -- jobs.)
    SELECT j.id, s.organization_id AS org, s.short_name, i.n FROM input i
    JOIN sync_jobs j ON j.id = i.id
    JOIN source_connections s ON s.id = j.source_connection_id
    WHERE job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at)
          IN ('expired', 'handed_back')
    FOR UPDATE OF j SKIP LOCKED
), candidates AS (
    SELECT * FROM fresh UNION ALL SELECT * FROM taken_over
), paused AS (
    -- The pauses (a small table) that stop a candidate.
    SELECT c.id,
           CASE WHEN bool_or(p.scope = 'all') THEN 'paused_all'
                ELSE 'paused_organization' END AS reason
    FROM candidates c
    JOIN pauses p ON p.scope = 'all' OR p.organization_id = c.org
    GROUP BY c.id
), runnable AS (
    SELECT * FROM candidates WHERE id NOT IN (SELECT id FROM paused)
), leased_per_org AS (
    -- Under a fair share only: each candidate organization's leased jobs.
    SELECT s.organization_id AS org, count(*) AS leased FROM sync_jobs j
    JOIN source_connections s ON s.id = j.source_connection_id
    WHERE $4::int IS NOT NULL AND j.active
      AND job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at) = 'leased'
      AND s.organization_id IN (SELECT org FROM runnable)
    GROUP BY 1
), caps AS (
    SELECT * FROM unnest($5::text[], $6::int[]) AS cap(short_name, cap)
), leased_per_type AS (
    -- Each capped source type's leased jobs (every organization's).
    SELECT j.short_name, count(*) AS leased FROM sync_jobs j
    WHERE j.active AND j.held_since IS NULL
      AND j.short_name IN (SELECT short_name FROM caps
                           WHERE short_name IN (SELECT short_name FROM runnable))
      AND job_phase(j.status, j.lease_owner, j.lease_expires_at, j.retry_at) = 'leased'
    GROUP BY 1
), ranked AS (
    SELECT r.id,
           row_number() OVER (PARTITION BY r.org ORDER BY r.n) + COALESCE(lo.leased, 0)
               AS org_running,
           row_number() OVER (PARTITION BY r.short_name ORDER BY r.n) + COALESCE(lt.leased, 0)
               AS type_running,
           cap.cap AS type_cap
    FROM runnable r
    LEFT JOIN leased_per_org lo ON lo.org = r.org
    LEFT JOIN leased_per_type lt ON lt.short_name = r.short_name
    LEFT JOIN caps cap ON cap.short_name = r.short_name
), admitted AS (
    -- As many of each organization's and source type's candidates as
    -- their share and cap have room for.
    SELECT id FROM ranked
    WHERE ($4::int IS NULL OR org_running <= $4::int)
      AND (type_cap IS NULL OR type_running <= type_cap)
), holds AS (
    SELECT p.id, p.reason FROM paused p
    UNION ALL
    SELECT r.id, CASE WHEN $4::int IS NOT NULL AND r.org_running > $4::int
                      THEN 'organization_cap' ELSE 'source_type_cap' END
    FROM ranked r WHERE r.id NOT IN (SELECT id FROM admitted)
), held_back AS (
    -- It waits here (V14) until what holds it lets go (a job of its
    -- organization or source type stops running, its pause ends) and
    -- releases it; its message is dropped. Only a job held for its
    -- organization's share names the organization (held_org).
    UPDATE sync_jobs j SET held_since = now(), waiting_reason = h.reason,
        held_org = CASE WHEN h.reason = 'organization_cap' THEN c.org END
    FROM holds h JOIN candidates c ON c.id = h.id
    WHERE j.id = h.id
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
        waiting_reason = NULL,
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
