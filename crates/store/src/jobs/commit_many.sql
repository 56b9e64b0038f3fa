-- jobs::commit_many: the batches of several jobs (at most one per job) in
-- ONE statement: each job's counts (by content hash against what is
-- stored), entity writes and deletions, what a full sync saw, cursor, lease
-- renewal and, with an outcome, its end and a credential failure on its
-- connection.
-- $2 lease_seconds.
-- Per job, arrays indexed by the job's place n (0-based): $1 lease token
--   (the claim the run holds: the fence), $24 seq (the commit's number in
--   its run: it applies only after commit seq - 1, see V13),
--   $3 n, $4 job_id, $5 connection_id, $6 delete_unseen (a completing full
--   sync), $7 failed (entities), $8 status (the outcome; NULL: not final),
--   $9 error, $10 error_category, $11 error_details, $12 cursor,
--   $19 run_id (a full sync's run, see V12; NULL otherwise), $20 copied
--   (entities the caller's transaction inserted already, by COPY: counted
--   as inserted), $23 seen_total (a completing full sync's distinct seen
--   ids, when the worker knows them; see Batch::seen_total), $25
--   mass_delete_min (the mass-deletion guard's floor of stored entities;
--   NULL: no guard).
-- Per entity to write: $13 its job's n, $14 entity_id, $15 content_hash,
-- $16 payload (json, as the worker serialized and hashed it).
-- Per id the source reported deleted: $17 its job's n, $18 entity_id.
-- Per id a full sync saw besides the entities to write (unchanged or
-- copied): $21 its job's n, $22 entity_id.
-- `fenced_jobs` fences the rest: it updates a job only while the run's
-- claim holds it (its lease token, status running or cancelling) and the
-- run's previous commit is the last applied, and every other write is for
-- the jobs it returned. A commit found applied already (a replay after a
-- lost connection) writes nothing and answers `replayed`. All CTEs read one snapshot, so
-- every count is taken from the state before this statement, and no two
-- parts touch the same row: `known_entities` writes the batches' ids,
-- `gone_entities` deletes only other ids.
WITH batches AS (
    SELECT * FROM unnest($3::int[], $4::uuid[], $5::uuid[], $6::bool[],
                         $7::bigint[], $8::text[], $9::text[], $10::text[],
                         $11::jsonb[], $12::jsonb[], $19::uuid[], $20::bigint[],
                         $23::bigint[], $1::uuid[], $24::bigint[], $25::bigint[])
        AS b(n, job_id, conn_id, delete_unseen, failed, status, error,
             error_category, error_details, cursor, run_id, copied, seen_total,
             token, seq, mass_delete_min)
), keys AS (
    -- The batches' ids and hashes, without the payloads: this
    -- is what the counting reads, and it stays small. n is the
    -- batch's place in the arrays, so its connection is a
    -- subscript, not a join.
    SELECT k.n, ($5::uuid[])[k.n + 1] AS conn_id, k.entity_id, k.content_hash,
           k.ord
    FROM unnest($13::int[], $14::text[], $15::bytea[]) WITH ORDINALITY
        AS k(n, entity_id, content_hash, ord)
), probed AS (
    SELECT k.ord, k.n, k.content_hash, e.content_hash AS stored_hash
    FROM keys k
    -- One primary-key probe per key. (As a plain join, the
    -- generic plan probed through a bitmap scan per key.)
    LEFT JOIN LATERAL (
        SELECT e.content_hash FROM entities e
        WHERE e.source_connection_id = k.conn_id AND e.entity_id = k.entity_id
        LIMIT 1
    ) e ON true
), changes AS (
    SELECT n,
           count(*) FILTER (WHERE stored_hash IS NULL) AS inserted,
           count(*) FILTER (WHERE stored_hash <> content_hash) AS updated
    FROM probed
    GROUP BY n
), stored AS (
    -- Per entity, in array order: 0 new (inserted plainly), 1 changed
    -- (rewritten), 2 unchanged (not written at all).
    SELECT array_agg(CASE WHEN stored_hash IS NULL THEN 0
                          WHEN stored_hash <> content_hash THEN 1 ELSE 2 END
                     ORDER BY ord) AS state
    FROM probed
), seen_now AS (
    -- What each full sync's batch saw: the entities it writes, and the
    -- rest it reported.
    SELECT k.n, k.entity_id FROM keys k WHERE ($19::uuid[])[k.n + 1] IS NOT NULL
    UNION ALL
    SELECT s.n, s.entity_id FROM unnest($21::int[], $22::text[]) AS s(n, entity_id)
), seen AS (
    -- Everything a completing full sync saw in this run: its earlier
    -- batches' rows and this batch.
    SELECT b.n, u.entity_id FROM batches b
    JOIN full_sync_seen f ON f.job_id = b.job_id AND f.run_id = b.run_id
    CROSS JOIN LATERAL unnest(f.entity_ids) AS u(entity_id)
    WHERE b.delete_unseen
    UNION ALL
    SELECT n, entity_id FROM seen_now
), doomed_all AS (
    SELECT b.n, e.source_connection_id, e.entity_id
    FROM unnest($17::int[], $18::text[]) AS d(n, entity_id)
    JOIN batches b ON b.n = d.n
    JOIN entities e
        ON e.source_connection_id = b.conn_id AND e.entity_id = d.entity_id
    UNION
    SELECT b.n, e.source_connection_id, e.entity_id FROM batches b
    JOIN entities e ON e.source_connection_id = b.conn_id
    WHERE b.delete_unseen
      -- Skipped when the run saw as many distinct ids as will be stored
      -- (what it saw is all stored: it reported no deletions).
      AND b.seen_total IS DISTINCT FROM (
          SELECT c.entity_count + b.copied
                 + COALESCE((SELECT d.inserted FROM changes d WHERE d.n = b.n), 0)
          FROM cursors c WHERE c.source_connection_id = b.conn_id)
      AND NOT EXISTS (
          SELECT 1 FROM seen s WHERE s.n = b.n AND s.entity_id = e.entity_id)
), mass_deletions AS (
    -- The guard: a completing full sync that would delete more than its
    -- connection's fraction of what is stored (with enough stored) and
    -- was not let through fails instead, deleting nothing.
    SELECT b.n, c.entity_count AS stored, count(*) AS would_delete,
           sc.max_delete_fraction AS fraction
    FROM batches b
    JOIN doomed_all d ON d.n = b.n
    JOIN cursors c ON c.source_connection_id = b.conn_id
    JOIN source_connections sc ON sc.id = b.conn_id
    JOIN sync_jobs j ON j.id = b.job_id
    WHERE b.delete_unseen AND b.mass_delete_min IS NOT NULL
      AND c.entity_count >= b.mass_delete_min
      AND sc.max_delete_fraction < 1 AND NOT j.allow_mass_deletion
    GROUP BY b.n, c.entity_count, sc.max_delete_fraction
    HAVING count(*) > sc.max_delete_fraction * c.entity_count
), doomed AS (
    SELECT * FROM doomed_all d WHERE d.n NOT IN (SELECT n FROM mass_deletions)
), judged AS (
    -- The batches, with the guard's failures in place of their outcome
    -- (and no cursor: the run did not complete).
    SELECT b.n, b.job_id, b.conn_id, b.delete_unseen, b.failed,
           CASE WHEN m.n IS NULL THEN b.status ELSE 'failed' END AS status,
           CASE WHEN m.n IS NULL THEN b.error ELSE format(
               'this full sync would delete %s of the connection''s %s stored entities '
               '(more than its max_delete_fraction, %s); nothing was deleted. If the '
               'source really lost them, run again with allow_mass_deletion=true',
               m.would_delete, m.stored, m.fraction) END AS error,
           CASE WHEN m.n IS NULL THEN b.error_category END AS error_category,
           CASE WHEN m.n IS NULL THEN b.error_details ELSE jsonb_build_object(
               'kind', 'mass_deletion', 'would_delete', m.would_delete,
               'stored', m.stored, 'max_delete_fraction', m.fraction,
               'min_entities', b.mass_delete_min) END AS error_details,
           CASE WHEN m.n IS NULL THEN b.cursor END AS cursor,
           b.run_id, b.copied, b.seen_total, b.token, b.seq
    FROM batches b LEFT JOIN mass_deletions m ON m.n = b.n
), tallies AS (
    SELECT b.*, COALESCE(d.inserted, 0) + COALESCE(b.copied, 0) AS inserted,
           COALESCE(d.updated, 0) AS updated,
           (SELECT count(*) FROM doomed x WHERE x.n = b.n) AS deleted
    FROM judged b LEFT JOIN changes d ON d.n = b.n
), fenced_jobs AS (
    UPDATE sync_jobs s SET
        entities_inserted = s.entities_inserted + t.inserted,
        entities_updated = s.entities_updated + t.updated,
        entities_deleted = s.entities_deleted + t.deleted,
        entities_failed = s.entities_failed + t.failed,
        status = COALESCE(t.status, s.status),
        completed_at = CASE WHEN t.status IS NOT NULL THEN now() END,
        lease_owner = CASE WHEN t.status IS NULL THEN s.lease_owner END,
        lease_expires_at = CASE WHEN t.status IS NULL
            THEN now() + make_interval(secs => $2) END,
        error = CASE WHEN t.status IS NULL THEN s.error ELSE t.error END,
        error_category = CASE WHEN t.status IS NULL
            THEN s.error_category ELSE t.error_category END,
        error_details = CASE WHEN t.status IS NULL
            THEN s.error_details ELSE t.error_details END,
        commit_seq = t.seq,
        modified_at = now()
    FROM tallies t
    WHERE s.id = t.job_id AND s.lease_token = t.token AND s.lease_owner IS NOT NULL
      AND s.commit_seq = t.seq - 1
      AND s.status IN ('running', 'cancelling')
      AND (t.status IS DISTINCT FROM 'cancelled' OR s.status = 'cancelling')
    RETURNING t.n, s.status
), new_entities AS (
    -- Entities not stored yet: a plain insert. Nothing else can
    -- insert them meanwhile: one job per connection is active,
    -- and its commits are fenced by (and serialized on) its row.
    -- Subscripts and filters rather than joins: a join hashed
    -- every payload (perf: a sixth of the statement's time).
    INSERT INTO entities (source_connection_id, entity_id, content_hash, payload)
    SELECT ($5::uuid[])[i.n + 1], i.entity_id, i.content_hash, i.payload
    FROM unnest($13::int[], $14::text[], $15::bytea[], $16::json[]) WITH ORDINALITY
        AS i(n, entity_id, content_hash, payload, ord)
    WHERE i.n = ANY (ARRAY(SELECT n FROM fenced_jobs))
      AND (SELECT state FROM stored)[i.ord] = 0
), known_entities AS (
    -- Entities stored with another hash are rewritten. Unchanged ones
    -- are not touched at all (not even locked): what a full sync saw is
    -- in `seen_rows`.
    INSERT INTO entities AS e (source_connection_id, entity_id, content_hash, payload)
    SELECT ($5::uuid[])[i.n + 1], i.entity_id, i.content_hash, i.payload
    FROM unnest($13::int[], $14::text[], $15::bytea[], $16::json[]) WITH ORDINALITY
        AS i(n, entity_id, content_hash, payload, ord)
    WHERE i.n = ANY (ARRAY(SELECT n FROM fenced_jobs))
      AND (SELECT state FROM stored)[i.ord] = 1
    ON CONFLICT (source_connection_id, entity_id) DO UPDATE SET
        content_hash = excluded.content_hash,
        payload = excluded.payload,
        updated_at = now()
), seen_rows AS (
    -- A full sync that goes on remembers what this batch saw (one row).
    INSERT INTO full_sync_seen (job_id, run_id, entity_ids)
    SELECT b.job_id, b.run_id, array_agg(s.entity_id)
    FROM seen_now s JOIN judged b ON b.n = s.n
    WHERE b.status IS NULL AND b.n IN (SELECT n FROM fenced_jobs)
    GROUP BY b.job_id, b.run_id
), seen_done AS (
    -- A job that ends forgets what its runs saw.
    DELETE FROM full_sync_seen f USING judged b
    WHERE f.job_id = b.job_id AND b.status IS NOT NULL
      AND b.n IN (SELECT n FROM fenced_jobs)
), gone_entities AS (
    DELETE FROM entities e USING doomed d
    WHERE e.source_connection_id = d.source_connection_id
      AND e.entity_id = d.entity_id AND d.n IN (SELECT n FROM fenced_jobs)
), cursor_state AS (
    UPDATE cursors c SET
        entity_count = c.entity_count + t.inserted - t.deleted,
        value = COALESCE(t.cursor, c.value),
        job_id = CASE WHEN t.cursor IS NULL THEN c.job_id ELSE t.job_id END,
        updated_at = now()
    FROM tallies t
    WHERE c.source_connection_id = t.conn_id AND t.n IN (SELECT n FROM fenced_jobs)
), reauth AS (
    UPDATE source_connections s SET
        needs_reauth = true, auth_error_category = t.error_category,
        auth_error_message = t.error, modified_at = now()
    FROM tallies t
    WHERE s.id = t.conn_id AND t.error_category IS NOT NULL
      AND t.n IN (SELECT n FROM fenced_jobs)
)
SELECT t.n, COALESCE(j.status, r.status) AS status, t.inserted, t.updated, t.deleted,
       r.id IS NOT NULL AS replayed
FROM tallies t LEFT JOIN fenced_jobs j ON j.n = t.n
-- The job as it was before this statement: this commit applied already.
LEFT JOIN sync_jobs r ON j.n IS NULL AND r.id = t.job_id
    AND r.lease_token = t.token AND r.commit_seq = t.seq
ORDER BY t.n
