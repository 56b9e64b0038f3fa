//! Collections: named groups of source connections.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct Collection {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub readable_id: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    /// Whether any source connection belongs to it.
    pub has_sources: bool,
}

const COLUMNS: &str = "c.id, c.organization_id, c.name, c.readable_id, c.created_at, c.modified_at,
    EXISTS (SELECT 1 FROM source_connections s WHERE s.collection_id = c.id)";

fn from_row(row: &Row) -> Collection {
    Collection {
        id: row.get(0),
        organization_id: row.get(1),
        name: row.get(2),
        readable_id: row.get(3),
        created_at: row.get(4),
        modified_at: row.get(5),
        has_sources: row.get(6),
    }
}

/// Inserts a collection. A taken readable id violates
/// [`crate::COLLECTION_READABLE_ID_UNIQUE`].
pub async fn insert(
    client: &impl GenericClient,
    organization_id: Uuid,
    name: &str,
    readable_id: &str,
) -> Result<Collection, StoreError> {
    let row = client
        .query_one(
            &format!(
                "WITH c AS (INSERT INTO collections (id, organization_id, name, readable_id)
                            VALUES ($1, $2, $3, $4) RETURNING *)
                 SELECT {COLUMNS} FROM c"
            ),
            &[&Uuid::now_v7(), &organization_id, &name, &readable_id],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn find_by_readable_id(
    client: &impl GenericClient,
    organization_id: Uuid,
    readable_id: &str,
) -> Result<Option<Collection>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM collections c
                 WHERE c.organization_id = $1 AND c.readable_id = $2"
            ),
            &[&organization_id, &readable_id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// An organization's collections, oldest first, `limit` after `skip`.
pub async fn list(
    client: &impl GenericClient,
    organization_id: Uuid,
    skip: i64,
    limit: i64,
) -> Result<Vec<Collection>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM collections c WHERE c.organization_id = $1
                 ORDER BY c.created_at, c.id OFFSET $2 LIMIT $3"
            ),
            &[&organization_id, &skip, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}
