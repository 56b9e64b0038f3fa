//! Source connections, with the statistics the API shows beside them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use syncway_model::{JobStatus, SourceConnectionJob};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::{JOB_COLUMNS, job_from_row};

/// How and when a connection syncs.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cron: Option<String>,
    /// IANA name the cron is read in.
    pub timezone: String,
    pub continuous: bool,
    pub cursor_field: Option<String>,
    pub full_sync_every_seconds: Option<i64>,
    pub paused: bool,
    /// The plan: the tick waited for and when it is due (tick + jitter);
    /// `None` when there is no schedule or it is paused.
    pub plan: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            cron: None,
            timezone: "UTC".to_owned(),
            continuous: false,
            cursor_field: None,
            full_sync_every_seconds: None,
            paused: false,
            plan: None,
        }
    }
}

/// The writable fields of a connection (create and PATCH).
#[derive(Debug, Clone)]
pub struct ConnectionFields {
    pub name: String,
    pub description: Option<String>,
    pub config: serde_json::Value,
    pub schedule: Schedule,
    /// The mass-deletion guard's fraction (in (0, 1]; 1 disables it).
    pub max_delete_fraction: f64,
}

/// The default of [`ConnectionFields::max_delete_fraction`].
pub const DEFAULT_MAX_DELETE_FRACTION: f64 = 0.5;

/// A connection as the API shows it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub readable_collection_id: String,
    pub short_name: String,
    pub fields: ConnectionFields,
    pub has_credentials: bool,
    pub needs_reauth: bool,
    pub auth_error_category: Option<String>,
    pub auth_error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub entity_count: i64,
    pub cursor_value: Option<serde_json::Value>,
    pub total_runs: i64,
    pub successful_runs: i64,
    pub failed_runs: i64,
    pub last_job: Option<SourceConnectionJob>,
}

/// A connection as the list endpoint shows it.
#[derive(Debug, Clone)]
pub struct ConnectionListItem {
    pub id: Uuid,
    pub name: String,
    pub short_name: String,
    pub readable_collection_id: String,
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
    pub has_credentials: bool,
    pub needs_reauth: bool,
    pub last_job_status: Option<JobStatus>,
    pub entity_count: i64,
}

fn select_connection(filter: &str) -> String {
    format!(
        "SELECT s.id, s.organization_id, col.readable_id, s.short_name, s.name, s.description,
                s.config, s.max_delete_fraction, s.schedule_cron, s.continuous, s.cursor_field, s.schedule_timezone,
                s.full_sync_every_seconds, s.schedule_paused, s.schedule_tick_at, s.next_run_at,
                s.credentials IS NOT NULL AS has_credentials, s.needs_reauth,
                s.auth_error_category, s.auth_error_message, s.created_at, s.modified_at,
                COALESCE(cur.entity_count, 0) AS entity_count, cur.value AS cursor_value,
                COALESCE(runs.completed + runs.failed + runs.cancelled, 0)
                    + COALESCE(lj.job_status IN ('pending', 'running', 'cancelling'), false)::int AS total,
                COALESCE(runs.completed, 0) AS ok, COALESCE(runs.failed, 0) AS failed, lj.*
         FROM source_connections s
         JOIN collections col ON col.id = s.collection_id
         LEFT JOIN cursors cur ON cur.source_connection_id = s.id
         -- Finished runs are counted as they finish (V17), not here.
         LEFT JOIN connection_runs runs ON runs.source_connection_id = s.id
         LEFT JOIN LATERAL (
             SELECT {JOB_COLUMNS} FROM sync_jobs j WHERE j.source_connection_id = s.id
             ORDER BY j.created_at DESC, j.id DESC LIMIT 1) lj ON true
         WHERE {filter}"
    )
}

fn connection_from_row(row: &Row) -> Result<Connection, StoreError> {
    let last_job_id: Option<Uuid> = row.try_get("job_id")?;
    Ok(Connection {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        readable_collection_id: row.try_get("readable_id")?,
        short_name: row.try_get("short_name")?,
        fields: ConnectionFields {
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            config: row.try_get("config")?,
            max_delete_fraction: row.try_get("max_delete_fraction")?,
            schedule: Schedule {
                cron: row.try_get("schedule_cron")?,
                timezone: row.try_get("schedule_timezone")?,
                continuous: row.try_get("continuous")?,
                cursor_field: row.try_get("cursor_field")?,
                full_sync_every_seconds: row.try_get("full_sync_every_seconds")?,
                paused: row.try_get("schedule_paused")?,
                plan: match (
                    row.try_get::<_, Option<DateTime<Utc>>>("schedule_tick_at")?,
                    row.try_get::<_, Option<DateTime<Utc>>>("next_run_at")?,
                ) {
                    (Some(tick), Some(due)) => Some((tick, due)),
                    _ => None,
                },
            },
        },
        has_credentials: row.try_get("has_credentials")?,
        needs_reauth: row.try_get("needs_reauth")?,
        auth_error_category: row.try_get("auth_error_category")?,
        auth_error_message: row.try_get("auth_error_message")?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
        entity_count: row.try_get("entity_count")?,
        cursor_value: row.try_get("cursor_value")?,
        total_runs: row.try_get("total")?,
        successful_runs: row.try_get("ok")?,
        failed_runs: row.try_get("failed")?,
        last_job: match last_job_id {
            Some(_) => Some(job_from_row(row)?),
            None => None,
        },
    })
}

/// Creates a connection `id` (a fresh `Uuid::now_v7()`: credentials are
/// sealed for it) in the collection `readable_collection_id`.
/// Returns `None` when the organization has no such collection.
pub async fn insert(
    client: &impl GenericClient,
    id: Uuid,
    organization_id: Uuid,
    readable_collection_id: &str,
    short_name: &str,
    fields: &ConnectionFields,
    credentials: Option<&[u8]>,
) -> Result<Option<Connection>, StoreError> {
    // The connection and its (empty) sync state, in one statement.
    let inserted = client
        .execute(
            "WITH s AS (
                 INSERT INTO source_connections
                     (id, organization_id, collection_id, name, description, short_name, config,
                      schedule_cron, continuous, cursor_field, credentials, schedule_timezone,
                      full_sync_every_seconds, schedule_paused, schedule_tick_at, next_run_at,
                      max_delete_fraction)
                 SELECT $1, $2, c.id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                        $17
                 FROM collections c WHERE c.organization_id = $2 AND c.readable_id = $3
                 RETURNING id
             )
             INSERT INTO cursors (source_connection_id) SELECT id FROM s",
            &[
                &id,
                &organization_id,
                &readable_collection_id,
                &fields.name,
                &fields.description,
                &short_name,
                &fields.config,
                &fields.schedule.cron,
                &fields.schedule.continuous,
                &fields.schedule.cursor_field,
                &credentials,
                &fields.schedule.timezone,
                &fields.schedule.full_sync_every_seconds,
                &fields.schedule.paused,
                &fields.schedule.plan.map(|p| p.0),
                &fields.schedule.plan.map(|p| p.1),
                &fields.max_delete_fraction,
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    find(client, organization_id, id).await
}

pub async fn find(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Connection>, StoreError> {
    let statement = client
        .prepare_cached(&select_connection("s.organization_id = $1 AND s.id = $2"))
        .await?;
    let row = client
        .query_opt(&statement, &[&organization_id, &id])
        .await?;
    row.as_ref().map(connection_from_row).transpose()
}

/// Locks the connection's row until the transaction ends (concurrent
/// updates of one connection take turns); false when there is none.
pub async fn lock(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT 1 FROM source_connections WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&organization_id, &id])
        .await?
        .is_some())
}

/// True when the organization owns the connection.
pub async fn exists(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM source_connections WHERE organization_id = $1 AND id = $2)",
        )
        .await?;
    Ok(client
        .query_one(&statement, &[&organization_id, &id])
        .await?
        .get(0))
}

/// Lists connections, oldest first, optionally of one collection.
pub async fn list(
    client: &impl GenericClient,
    organization_id: Uuid,
    readable_collection_id: Option<&str>,
    skip: i64,
    limit: i64,
) -> Result<Vec<ConnectionListItem>, StoreError> {
    let rows = client
        .query(
            // The page is chosen first (the index on the organization's
            // connections, then the offset), and only its rows get their
            // entity count and last job: a deep page costs the offset's
            // index entries, not a last-job look-up for each one skipped.
            "WITH page AS (
                 SELECT s.id, col.readable_id
                 FROM source_connections s
                 JOIN collections col ON col.id = s.collection_id
                 WHERE s.organization_id = $1 AND ($2::text IS NULL OR col.readable_id = $2)
                 ORDER BY s.created_at, s.id
                 OFFSET $3 LIMIT $4
             )
             SELECT s.id, s.name, s.short_name, p.readable_id, s.created_at, s.modified_at,
                    s.credentials IS NOT NULL AS has_credentials, s.needs_reauth,
                    lj.status AS last_job_status, COALESCE(cur.entity_count, 0) AS entity_count
             FROM page p
             JOIN source_connections s ON s.id = p.id
             LEFT JOIN cursors cur ON cur.source_connection_id = s.id
             LEFT JOIN LATERAL (
                 SELECT status FROM sync_jobs j WHERE j.source_connection_id = s.id
                 ORDER BY j.created_at DESC, j.id DESC LIMIT 1) lj ON true
             ORDER BY s.created_at, s.id",
            &[&organization_id, &readable_collection_id, &skip, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let status: Option<String> = row.try_get("last_job_status")?;
            Ok(ConnectionListItem {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                short_name: row.try_get("short_name")?,
                readable_collection_id: row.try_get("readable_id")?,
                created_at: row.try_get("created_at")?,
                modified_at: row.try_get("modified_at")?,
                has_credentials: row.try_get("has_credentials")?,
                needs_reauth: row.try_get("needs_reauth")?,
                last_job_status: status
                    .map(|status| status.parse())
                    .transpose()
                    .map_err(|error| StoreError::Corrupt(format!("{error}")))?,
                entity_count: row.try_get("entity_count")?,
            })
        })
        .collect()
}

/// Replaces the writable fields; the schedule's plan only when `replan`
/// (a changed schedule moves its next run at once; an unchanged one keeps
/// the plan the schedulers move on). New credentials (when `Some`) also
/// clear a pending re-authentication. Returns false when the connection is
/// not the organization's.
pub async fn update(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
    fields: &ConnectionFields,
    credentials: Option<&[u8]>,
    replan: bool,
) -> Result<bool, StoreError> {
    let updated = client
        .execute(
            "UPDATE source_connections SET
                 name = $3, description = $4, config = $5, schedule_cron = $6,
                 continuous = $7, cursor_field = $8,
                 schedule_timezone = $10, full_sync_every_seconds = $11, schedule_paused = $12,
                 schedule_tick_at = CASE WHEN $13 THEN $14 ELSE schedule_tick_at END,
                 next_run_at = CASE WHEN $13 THEN $15 ELSE next_run_at END,
                 max_delete_fraction = $16,
                 credentials = COALESCE($9, credentials),
                 needs_reauth = needs_reauth AND $9::bytea IS NULL,
                 auth_error_category = CASE WHEN $9::bytea IS NULL THEN auth_error_category END,
                 auth_error_message = CASE WHEN $9::bytea IS NULL THEN auth_error_message END,
                 modified_at = now()
             WHERE organization_id = $1 AND id = $2",
            &[
                &organization_id,
                &id,
                &fields.name,
                &fields.description,
                &fields.config,
                &fields.schedule.cron,
                &fields.schedule.continuous,
                &fields.schedule.cursor_field,
                &credentials,
                &fields.schedule.timezone,
                &fields.schedule.full_sync_every_seconds,
                &fields.schedule.paused,
                &replan,
                &fields.schedule.plan.map(|p| p.0),
                &fields.schedule.plan.map(|p| p.1),
                &fields.max_delete_fraction,
            ],
        )
        .await?;
    Ok(updated == 1)
}

/// Deletes a connection. Its cursor and its active job go with it in the
/// same statement (a trigger, V17: a worker running the job finds its row
/// gone at its next write, the fence, writes nothing more, and stops); its
/// entities and finished jobs are queued for the retention loop, which
/// removes them in small batches. Returns false when the connection is not
/// the organization's.
pub async fn delete(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let deleted = client
        .execute(
            "DELETE FROM source_connections WHERE organization_id = $1 AND id = $2",
            &[&organization_id, &id],
        )
        .await?;
    Ok(deleted == 1)
}

/// Replaces sealed credentials with the same credentials sealed again
/// (after a key rotation), unless they changed meanwhile. Returns whether
/// the row was updated.
pub async fn reseal_credentials(
    client: &impl GenericClient,
    id: Uuid,
    old: &[u8],
    new: &[u8],
) -> Result<bool, StoreError> {
    let updated = client
        .execute(
            "UPDATE source_connections SET credentials = $3 WHERE id = $1 AND credentials = $2",
            &[&id, &old, &new],
        )
        .await?;
    Ok(updated == 1)
}

/// A connection's sealed credentials, for a caller that seals them again.
pub async fn sealed_credentials(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = client
        .query_opt(
            "SELECT credentials FROM source_connections WHERE organization_id = $1 AND id = $2",
            &[&organization_id, &id],
        )
        .await?;
    Ok(row.and_then(|row| row.get(0)))
}
