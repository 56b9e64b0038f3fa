-- jobs::commit_many: the batches of several jobs (at most one per job) in
-- ONE statement: each job's counts (by content hash against what is
-- stored), entity writes and deletions, cursor, lease renewal and, with an
-- outcome, its end and a credential failure on its connection.
-- $1 owner (the worker's lease owner name), $2 lease_seconds.
-- Per job, arrays indexed by the job's place n (0-based):
--   $3 n, $4 job_id, $5 connection_id, $6 delete_unseen (a completing full
--   sync), $7 failed (entities), $8 status (the outcome; NULL: not final),
--   $9 error, $10 error_category, $11 error_details, $12 cursor.
-- Per entity: $13 its job's n, $14 entity_id, $15 content_hash, $16 payload
-- (json, as the worker serialized and hashed it).
-- Per id the source reported deleted: $17 its job's n, $18 entity_id.
-- $19 the ids of the full-sync jobs (they stamp unchanged entities too).
-- `fenced_jobs` fences the rest: it updates a job only while this worker
-- holds it (lease_owner = $1, status running or cancelling), and every
-- other write is for the jobs it returned. All CTEs read one snapshot, so
-- every count is taken from the state before this statement, and no two
-- parts touch the same row: `known_entities` writes the batches' ids,
-- `gone_entities` deletes only other ids.
WITH batches AS (
    SELECT * FROM unnest($3::int[], $4::uuid[], $5::uuid[], $6::bool[],
                         $7::bigint[], $8::text[], $9::text[], $10::text[],
                         $11::jsonb[], $12::jsonb[])
        AS b(n, job_id, conn_id, delete_unseen, failed, status, error,
             error_category, error_details, cursor)
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
), already_stored AS (
    -- Per entity, in array order: is it stored already? New
    -- ones are inserted plainly, the rest upserted.
    SELECT array_agg(stored_hash IS NOT NULL ORDER BY ord) AS known FROM probed
), doomed AS (
    SELECT b.n, e.source_connection_id, e.entity_id
    FROM unnest($17::int[], $18::text[]) AS d(n, entity_id)
    JOIN batches b ON b.n = d.n
    JOIN entities e
        ON e.source_connection_id = b.conn_id AND e.entity_id = d.entity_id
    UNION
    SELECT b.n, e.source_connection_id, e.entity_id FROM batches b
    JOIN entities e ON e.source_connection_id = b.conn_id
    WHERE b.delete_unseen AND e.last_seen_job IS DISTINCT FROM b.job_id
      AND NOT EXISTS (
          SELECT 1 FROM keys k WHERE k.n = b.n AND k.entity_id = e.entity_id)
), tallies AS (
    SELECT b.*, COALESCE(d.inserted, 0) AS inserted, COALESCE(d.updated, 0) AS updated,
           (SELECT count(*) FROM doomed x WHERE x.n = b.n) AS deleted
    FROM batches b LEFT JOIN changes d ON d.n = b.n
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
        modified_at = now()
    FROM tallies t
    WHERE s.id = t.job_id AND s.lease_owner = $1
      AND s.status IN ('running', 'cancelling')
      AND (t.status IS DISTINCT FROM 'cancelled' OR s.status = 'cancelling')
    RETURNING t.n, s.status
), new_entities AS (
    -- Entities not stored yet: a plain insert. Nothing else can
    -- insert them meanwhile: one job per connection is active,
    -- and its commits are fenced by (and serialized on) its row.
    -- Subscripts and filters rather than joins: a join hashed
    -- every payload (perf: a sixth of the statement's time).
    INSERT INTO entities
        (source_connection_id, entity_id, content_hash, payload, last_seen_job)
    SELECT ($5::uuid[])[i.n + 1], i.entity_id, i.content_hash, i.payload,
           ($4::uuid[])[i.n + 1]
    FROM unnest($13::int[], $14::text[], $15::bytea[], $16::json[]) WITH ORDINALITY
        AS i(n, entity_id, content_hash, payload, ord)
    WHERE i.n = ANY (ARRAY(SELECT n FROM fenced_jobs))
      AND NOT (SELECT known FROM already_stored)[i.ord]
), known_entities AS (
    -- Entities stored already: changed ones are rewritten, and a
    -- full sync stamps the unchanged ones too.
    INSERT INTO entities AS e
        (source_connection_id, entity_id, content_hash, payload, last_seen_job)
    SELECT ($5::uuid[])[i.n + 1], i.entity_id, i.content_hash, i.payload,
           ($4::uuid[])[i.n + 1]
    FROM unnest($13::int[], $14::text[], $15::bytea[], $16::json[]) WITH ORDINALITY
        AS i(n, entity_id, content_hash, payload, ord)
    WHERE i.n = ANY (ARRAY(SELECT n FROM fenced_jobs))
      AND (SELECT known FROM already_stored)[i.ord]
    ON CONFLICT (source_connection_id, entity_id) DO UPDATE SET
        content_hash = excluded.content_hash,
        payload = CASE WHEN e.content_hash = excluded.content_hash
            THEN e.payload ELSE excluded.payload END,
        updated_at = CASE WHEN e.content_hash = excluded.content_hash
            THEN e.updated_at ELSE now() END,
        last_seen_job = excluded.last_seen_job
    WHERE e.content_hash <> excluded.content_hash
       OR excluded.last_seen_job = ANY($19::uuid[])
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
SELECT t.n, j.status, t.inserted, t.updated, t.deleted
FROM tallies t LEFT JOIN fenced_jobs j ON j.n = t.n
ORDER BY t.n
