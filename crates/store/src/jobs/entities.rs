//! Entity writes, diffed by content hash. They belong to a job's batch
//! transaction, hence this module's place under `jobs`.

use deadpool_postgres::GenericClient;
use syncway_model::ContentHash;
use uuid::Uuid;

use crate::StoreError;

/// One entity to store.
#[derive(Debug, Clone)]
pub struct EntityWrite {
    pub entity_id: String,
    pub content_hash: ContentHash,
    pub payload: serde_json::Value,
}

/// Upserts entities whose content changed. Ids must be unique within the
/// slice. With `stamp_unchanged` (full syncs), unchanged entities are stamped
/// with `job_id` too, so that [`delete_unseen`] can find what the source no
/// longer has. Returns (inserted, updated).
pub async fn upsert(
    client: &impl GenericClient,
    source_connection_id: Uuid,
    job_id: Uuid,
    entities: &[EntityWrite],
    stamp_unchanged: bool,
) -> Result<(i64, i64), StoreError> {
    if entities.is_empty() {
        return Ok((0, 0));
    }
    let ids: Vec<&str> = entities.iter().map(|e| e.entity_id.as_str()).collect();
    let hashes: Vec<&[u8]> = entities.iter().map(|e| &e.content_hash[..]).collect();
    let payloads: Vec<&serde_json::Value> = entities.iter().map(|e| &e.payload).collect();
    let statement = client
        .prepare_cached(
            "WITH input AS (
                 SELECT * FROM unnest($2::text[], $3::bytea[], $4::jsonb[])
                     AS i(entity_id, content_hash, payload)
             ), old AS (
                 SELECT e.entity_id, e.content_hash FROM entities e
                 WHERE e.source_connection_id = $1 AND e.entity_id = ANY($2)
             ), up AS (
                 INSERT INTO entities AS e
                     (source_connection_id, entity_id, content_hash, payload, last_seen_job)
                 SELECT $1, entity_id, content_hash, payload, $5 FROM input
                 ON CONFLICT (source_connection_id, entity_id) DO UPDATE SET
                     content_hash = excluded.content_hash,
                     payload = CASE WHEN e.content_hash = excluded.content_hash
                         THEN e.payload ELSE excluded.payload END,
                     updated_at = CASE WHEN e.content_hash = excluded.content_hash
                         THEN e.updated_at ELSE now() END,
                     last_seen_job = excluded.last_seen_job
                 WHERE e.content_hash <> excluded.content_hash OR $6
             )
             SELECT count(*) FILTER (WHERE o.entity_id IS NULL),
                    count(*) FILTER (WHERE o.content_hash <> i.content_hash)
             FROM input i LEFT JOIN old o ON o.entity_id = i.entity_id",
        )
        .await?;
    let row = client
        .query_one(
            &statement,
            &[
                &source_connection_id,
                &ids,
                &hashes,
                &payloads,
                &job_id,
                &stamp_unchanged,
            ],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Deletes the listed entities (those an incremental source reported as
/// deleted). Returns how many existed.
pub async fn delete(
    client: &impl GenericClient,
    source_connection_id: Uuid,
    entity_ids: &[String],
) -> Result<i64, StoreError> {
    if entity_ids.is_empty() {
        return Ok(0);
    }
    let deleted = client
        .execute(
            "DELETE FROM entities WHERE source_connection_id = $1 AND entity_id = ANY($2)",
            &[&source_connection_id, &entity_ids],
        )
        .await?;
    Ok(deleted as i64)
}

/// At the end of a full sync: deletes the entities the job did not see.
pub async fn delete_unseen(
    client: &impl GenericClient,
    source_connection_id: Uuid,
    job_id: Uuid,
) -> Result<i64, StoreError> {
    let deleted = client
        .execute(
            "DELETE FROM entities
             WHERE source_connection_id = $1 AND last_seen_job IS DISTINCT FROM $2",
            &[&source_connection_id, &job_id],
        )
        .await?;
    Ok(deleted as i64)
}
