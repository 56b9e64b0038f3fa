//! What happened: a job's timeline (written by triggers on `sync_jobs`,
//! V17) and the audit log of the requests that changed something. Both
//! are read oldest first, a page at a time, after an opaque position.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// One thing that happened to a job.
#[derive(Debug, Clone)]
pub struct TimelineItem {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub attempt: i32,
    pub worker_id: Option<String>,
    pub message: String,
    pub details: serde_json::Value,
}

/// The timeline of an organization's job after `after` (a previous page's
/// last `seq`), at most `limit` items; `None` when the job is not the
/// organization's (or not the connection's).
pub async fn timeline(
    client: &impl GenericClient,
    organization_id: Uuid,
    source_connection_id: Uuid,
    job_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Option<Vec<TimelineItem>>, StoreError> {
    let owned = client
        .query_opt(
            "SELECT 1 FROM sync_jobs j JOIN source_connections s ON s.id = j.source_connection_id
             WHERE j.id = $1 AND j.source_connection_id = $2 AND s.organization_id = $3",
            &[&job_id, &source_connection_id, &organization_id],
        )
        .await?;
    if owned.is_none() {
        return Ok(None);
    }
    timeline_page(client, job_id, after, limit).await.map(Some)
}

/// Any organization's job's timeline, by the job's id alone (the
/// operator's view); `None` when there is no such job.
pub async fn timeline_of_any(
    client: &impl GenericClient,
    job_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Option<Vec<TimelineItem>>, StoreError> {
    let exists = client
        .query_opt("SELECT 1 FROM sync_jobs WHERE id = $1", &[&job_id])
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    timeline_page(client, job_id, after, limit).await.map(Some)
}

async fn timeline_page(
    client: &impl GenericClient,
    job_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<TimelineItem>, StoreError> {
    let rows = client
        .query(
            "SELECT seq, at, kind, attempt, worker_id, message, details FROM job_timeline
             WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&job_id, &after, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(TimelineItem {
                seq: row.try_get("seq")?,
                at: row.try_get("at")?,
                kind: row.try_get("kind")?,
                attempt: row.try_get("attempt")?,
                worker_id: row.try_get("worker_id")?,
                message: row.try_get("message")?,
                details: row.try_get("details")?,
            })
        })
        .collect()
}

/// A request that changed something, or tried to.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Option<DateTime<Utc>>,
    pub organization_id: Uuid,
    pub key_id: Option<Uuid>,
    pub key_prefix: Option<String>,
    pub role: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub status: i32,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
}

/// Records one request (`id` and `at` are assigned).
pub async fn record(client: &impl GenericClient, entry: &AuditEntry) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO audit_log (organization_id, key_id, key_prefix, role, action,
                                    target_type, target_id, status, request_id, client_address)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &entry.organization_id,
                &entry.key_id,
                &entry.key_prefix,
                &entry.role,
                &entry.action,
                &entry.target_type,
                &entry.target_id,
                &entry.status,
                &entry.request_id,
                &entry.client_address,
            ],
        )
        .await?;
    Ok(())
}

/// What to list from the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// One organization's entries, or (`None`) everyone's.
    pub organization_id: Option<Uuid>,
    pub after: i64,
    pub limit: i64,
    pub action: Option<String>,
    pub target_id: Option<String>,
}

/// Entries oldest first, after `filter.after` (a previous page's last id).
pub async fn audit_log(
    client: &impl GenericClient,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = client
        .query(
            "SELECT id, at, organization_id, key_id, key_prefix, role, action, target_type,
                    target_id, status, request_id, client_address
             FROM audit_log
             WHERE ($1::uuid IS NULL OR organization_id = $1) AND id > $2
               AND ($4::text IS NULL OR action = $4) AND ($5::text IS NULL OR target_id = $5)
             ORDER BY id LIMIT $3",
            &[
                &filter.organization_id,
                &filter.after,
                &filter.limit,
                &filter.action,
                &filter.target_id,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                organization_id: row.try_get("organization_id")?,
                key_id: row.try_get("key_id")?,
                key_prefix: row.try_get("key_prefix")?,
                role: row.try_get("role")?,
                action: row.try_get("action")?,
                target_type: row.try_get("target_type")?,
                target_id: row.try_get("target_id")?,
                status: row.try_get("status")?,
                request_id: row.try_get("request_id")?,
                client_address: row.try_get("client_address")?,
            })
        })
        .collect()
}
