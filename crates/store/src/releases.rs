//! Deleted connections' leftovers at their sources (V22): claimed by a
//! worker for a while (`next_at` moved ahead, a lease), removed once
//! released, tried again later when the source could not be reached.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// A release to make.
#[derive(Debug, Clone)]
pub struct Release {
    pub connection_id: Uuid,
    pub short_name: String,
    pub config: serde_json::Value,
    pub credentials: Option<Vec<u8>>,
    pub attempts: i32,
}

/// Claims up to `limit` due releases for `lease_seconds`.
pub async fn claim(
    client: &impl GenericClient,
    limit: i64,
    lease_seconds: f64,
) -> Result<Vec<Release>, StoreError> {
    let rows = client
        .query(
            "UPDATE source_releases r
             SET next_at = now() + make_interval(secs => $2), attempts = r.attempts + 1
             FROM (SELECT connection_id FROM source_releases WHERE next_at <= now()
                   ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
             WHERE r.connection_id = due.connection_id
             RETURNING r.connection_id, r.short_name, r.config, r.credentials, r.attempts",
            &[&limit, &lease_seconds],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Release {
            connection_id: row.get(0),
            short_name: row.get(1),
            config: row.get(2),
            credentials: row.get(3),
            attempts: row.get(4),
        })
        .collect())
}

/// The release was made: forget it.
pub async fn done(client: &impl GenericClient, connection_id: Uuid) -> Result<(), StoreError> {
    client
        .execute(
            "DELETE FROM source_releases WHERE connection_id = $1",
            &[&connection_id],
        )
        .await?;
    Ok(())
}

/// The release failed: try again at `next_at`.
pub async fn failed(
    client: &impl GenericClient,
    connection_id: Uuid,
    error: &str,
    next_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE source_releases SET last_error = $2, next_at = $3 WHERE connection_id = $1",
            &[&connection_id, &error, &next_at],
        )
        .await?;
    Ok(())
}
