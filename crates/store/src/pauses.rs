//! Pauses (V20, CONTRACT.md §11): of the whole deployment or of one
//! organization. While one holds, nothing of its scope is claimed: the
//! claim holds the jobs ([`crate::jobs::claim_many`]) until a resume lets
//! them go ([`crate::jobs::release_unpaused`]).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// A pause; `organization_id` is `None` for the deployment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub scope: String,
    pub organization_id: Option<Uuid>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub created_by_key_prefix: Option<String>,
    /// Set through the operator's routes (an organization's own key cannot
    /// lift it), rather than by the organization's own key.
    pub by_operator: bool,
}

const COLUMNS: &str =
    "scope, organization_id, reason, created_at, created_by_key_prefix, by_operator";

fn from_row(row: &tokio_postgres::Row) -> Result<Pause, StoreError> {
    Ok(Pause {
        scope: row.try_get("scope")?,
        organization_id: row.try_get("organization_id")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        created_by_key_prefix: row.try_get("created_by_key_prefix")?,
        by_operator: row.try_get("by_operator")?,
    })
}

fn scope(organization_id: Option<Uuid>) -> &'static str {
    if organization_id.is_some() {
        "organization"
    } else {
        "all"
    }
}

/// Pauses the deployment (`None`) or an organization, as the operator
/// (`by_operator`) or as the organization itself. Pausing what is paused
/// already changes only the reason. `key_id`: the key that asked.
pub async fn pause(
    client: &impl GenericClient,
    organization_id: Option<Uuid>,
    by_operator: bool,
    reason: &str,
    key_id: Option<Uuid>,
) -> Result<Pause, StoreError> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO pauses (scope, organization_id, by_operator, reason,
                                     created_by_key_prefix)
                 VALUES ($1, $2, $3, $4, (SELECT prefix FROM api_keys WHERE id = $5))
                 ON CONFLICT (scope, COALESCE(organization_id,
                                              '00000000-0000-0000-0000-000000000000'),
                              by_operator)
                 DO UPDATE SET reason = EXCLUDED.reason
                 RETURNING {COLUMNS}"
            ),
            &[
                &scope(organization_id),
                &organization_id,
                &by_operator,
                &reason,
                &key_id,
            ],
        )
        .await?;
    from_row(&row)
}

/// Ends the operator's (`by_operator`) or the organization's own pause;
/// `None` when there was none.
pub async fn resume(
    client: &impl GenericClient,
    organization_id: Option<Uuid>,
    by_operator: bool,
) -> Result<Option<Pause>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "DELETE FROM pauses WHERE scope = $1
                   AND organization_id IS NOT DISTINCT FROM $2 AND by_operator = $3
                 RETURNING {COLUMNS}"
            ),
            &[&scope(organization_id), &organization_id, &by_operator],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every pause, the deployment's first; with `organization_id`, the ones
/// that hold that organization (the deployment's and its own).
pub async fn list(
    client: &impl GenericClient,
    organization_id: Option<Uuid>,
) -> Result<Vec<Pause>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM pauses
                 WHERE $1::uuid IS NULL OR organization_id IS NULL OR organization_id = $1
                 ORDER BY scope, created_at"
            ),
            &[&organization_id],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

/// Up to `limit` running jobs of the scope, oldest first:
/// what a pause with `cancel_running` cancels, a batch at a time.
pub async fn running_jobs(
    client: &impl GenericClient,
    organization_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let rows = client
        .query(
            "SELECT id FROM sync_jobs
             WHERE active AND status = 'running'
               AND ($1::uuid IS NULL OR organization_id = $1)
             ORDER BY created_at LIMIT $2",
            &[&organization_id, &limit],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
}
