//! The registry of live API processes (migration V15): how many share the
//! deployment-wide per-key limits.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// Refreshes this process's row (made if missing), removes rows long dead,
/// and returns how many processes were seen within `live_within` (this one
/// included).
pub async fn heartbeat(
    client: &impl GenericClient,
    id: Uuid,
    hostname: &str,
    live_within: Duration,
) -> Result<u32, StoreError> {
    let statement = client
        .prepare_cached(
            "WITH seen AS (
                 INSERT INTO api_processes (id, hostname) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET last_seen = now()
             ), gone AS (
                 DELETE FROM api_processes WHERE last_seen < now() - interval '1 hour'
             )
             SELECT count(*) FROM api_processes
             WHERE id <> $1 AND last_seen > now() - make_interval(secs => $3)",
        )
        .await?;
    let others: i64 = client
        .query_one(&statement, &[&id, &hostname, &live_within.as_secs_f64()])
        .await?
        .get(0);
    Ok(u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1))
}

/// Removes this process's row (it is stopping).
pub async fn leave(client: &impl GenericClient, id: Uuid) -> Result<(), StoreError> {
    client
        .execute("DELETE FROM api_processes WHERE id = $1", &[&id])
        .await?;
    Ok(())
}
