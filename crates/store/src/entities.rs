//! Reading a connection's stored entities (writing them is part of the
//! fenced batch commit in [`crate::jobs`]).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// One stored entity, as the API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntity {
    pub entity_id: String,
    pub content_hash: Vec<u8>,
    pub payload: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

/// Up to `limit` entities of the connection in entity id order, starting
/// after `after` (keyset pagination: stable while syncs write, and each
/// page is one index range scan however deep it is). The caller checks the
/// connection.
pub async fn list(
    client: &impl GenericClient,
    source_connection_id: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEntity>, StoreError> {
    // Two statements, so that `after` is an index condition, not a filter.
    let rows = match after {
        None => {
            let statement = client
                .prepare_cached(
                    "SELECT entity_id, content_hash, payload, updated_at FROM entities
                     WHERE source_connection_id = $1
                     ORDER BY entity_id LIMIT $2",
                )
                .await?;
            client
                .query(&statement, &[&source_connection_id, &limit])
                .await?
        }
        Some(after) => {
            let statement = client
                .prepare_cached(
                    "SELECT entity_id, content_hash, payload, updated_at FROM entities
                     WHERE source_connection_id = $1 AND entity_id > $2
                     ORDER BY entity_id LIMIT $3",
                )
                .await?;
            client
                .query(&statement, &[&source_connection_id, &after, &limit])
                .await?
        }
    };
    Ok(rows
        .iter()
        .map(|row| StoredEntity {
            entity_id: row.get(0),
            content_hash: row.get(1),
            payload: row.get(2),
            updated_at: row.get(3),
        })
        .collect())
}

/// Up to `limit` stored entity ids of the connection that start with
/// `prefix`, after `after`, in order (a range scan of the primary key).
pub async fn ids_with_prefix(
    client: &impl GenericClient,
    connection: Uuid,
    prefix: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT entity_id FROM entities
             WHERE source_connection_id = $1
               AND entity_id >= $2 AND entity_id > COALESCE($3, '')
               AND starts_with(entity_id, $2)
             ORDER BY entity_id LIMIT $4",
            &[&connection, &prefix, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
