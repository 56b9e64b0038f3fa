-- jobs::commit_bulk: which of a batch's entities are not stored as they
-- are. $1 connection_id, $2 entity ids, $3 their content hashes.
-- Returns the (1-based) place of each new or changed entity, and whether
-- it is new; an unchanged entity returns nothing.
SELECT k.ord, e.content_hash IS NULL AS new
FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS k(entity_id, content_hash, ord)
-- One primary-key probe per key (as in commit_many.sql).
LEFT JOIN LATERAL (
    SELECT e.content_hash FROM entities e
    WHERE e.source_connection_id = $1 AND e.entity_id = k.entity_id
    LIMIT 1
) e ON true
WHERE e.content_hash IS DISTINCT FROM k.content_hash
