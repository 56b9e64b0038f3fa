//! Webhook subscriptions: an organization's endpoints. Every statement is
//! scoped by the organization, so another one's subscription looks missing.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub url: String,
    pub filter_types: Vec<String>,
    pub description: Option<String>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    /// The sealed signing secret.
    pub secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `healthy`, `degraded`, `failing` or `unknown`, from its last ten
    /// attempts.
    pub health_status: String,
}

/// Its health from the last ten attempts: all delivered, healthy; none,
/// failing; some, degraded; no attempt yet, unknown.
const COLUMNS: &str = "s.id, s.organization_id, s.url, s.filter_types, s.description, s.disabled,
    s.disabled_reason, s.secret, s.created_at, s.updated_at,
    (SELECT CASE WHEN count(*) = 0 THEN 'unknown'
                 WHEN bool_and(a.succeeded) THEN 'healthy'
                 WHEN NOT bool_or(a.succeeded) THEN 'failing'
                 ELSE 'degraded' END
     FROM (SELECT a.succeeded FROM webhook_attempts a WHERE a.subscription_id = s.id
           ORDER BY a.at DESC LIMIT 10) a) AS health_status";

fn from_row(row: &Row) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        url: row.try_get("url")?,
        filter_types: row.try_get("filter_types")?,
        description: row.try_get("description")?,
        disabled: row.try_get("disabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: row.try_get("secret")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        health_status: row.try_get("health_status")?,
    })
}

/// What a new subscription is.
#[derive(Debug, Clone)]
pub struct NewSubscription<'a> {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub url: &'a str,
    pub filter_types: &'a [String],
    pub description: Option<&'a str>,
    pub sealed_secret: &'a [u8],
}

pub async fn insert(
    client: &impl GenericClient,
    new: &NewSubscription<'_>,
) -> Result<Subscription, StoreError> {
    let row = client
        .query_one(
            &format!(
                "WITH s AS (
                     INSERT INTO webhook_subscriptions
                         (id, organization_id, url, filter_types, description, secret)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *)
                 SELECT {COLUMNS} FROM s"
            ),
            &[
                &new.id,
                &new.organization_id,
                &new.url,
                &new.filter_types,
                &new.description,
                &new.sealed_secret,
            ],
        )
        .await?;
    from_row(&row)
}

/// An organization's subscriptions, oldest first.
pub async fn list(
    client: &impl GenericClient,
    organization_id: Uuid,
) -> Result<Vec<Subscription>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM webhook_subscriptions s
                 WHERE s.organization_id = $1 ORDER BY s.created_at, s.id"
            ),
            &[&organization_id],
        )
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn find(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Subscription>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM webhook_subscriptions s
                 WHERE s.organization_id = $1 AND s.id = $2"
            ),
            &[&organization_id, &id],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A PATCH: what to change (`None`: leave as it is).
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub url: Option<String>,
    pub filter_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub disabled: Option<bool>,
    /// A new sealed secret; the one it replaces signs too for a day.
    pub sealed_secret: Option<Vec<u8>>,
}

/// Applies `changes`. Disabling fails the pending deliveries (recover
/// sends them again); enabling clears why it was disabled and its failure
/// streak.
pub async fn update(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
    changes: &Changes,
) -> Result<Option<Subscription>, StoreError> {
    let description_given = changes.description.is_some();
    let description = changes.description.clone().flatten();
    let row = client
        .query_opt(
            &format!(
                "WITH s AS (
                     UPDATE webhook_subscriptions s SET
                         url = COALESCE($3, s.url),
                         filter_types = COALESCE($4, s.filter_types),
                         description = CASE WHEN $5 THEN $6 ELSE s.description END,
                         disabled = COALESCE($7, s.disabled),
                         disabled_reason = CASE WHEN $7 = false THEN NULL ELSE s.disabled_reason END,
                         failing_since = CASE WHEN $7 = false THEN NULL ELSE s.failing_since END,
                         previous_secret = CASE WHEN $8::bytea IS NULL THEN s.previous_secret
                                                ELSE s.secret END,
                         previous_secret_until = CASE WHEN $8::bytea IS NULL THEN s.previous_secret_until
                                                      ELSE now() + interval '24 hours' END,
                         secret = COALESCE($8, s.secret),
                         updated_at = now()
                     WHERE s.organization_id = $1 AND s.id = $2
                     RETURNING *
                 ), failed AS (
                     UPDATE webhook_deliveries d SET state = 'failed', lease_owner = NULL,
                                                     lease_until = NULL
                     FROM s WHERE s.disabled AND d.subscription_id = s.id AND d.state = 'pending'
                 )
                 SELECT {COLUMNS} FROM s"
            ),
            &[
                &organization_id,
                &id,
                &changes.url,
                &changes.filter_types,
                &description_given,
                &description,
                &changes.disabled,
                &changes.sealed_secret,
            ],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes a subscription (its deliveries and attempts go with it).
pub async fn delete(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Subscription>, StoreError> {
    let row = client
        .query_opt(
            "WITH s AS (
                     DELETE FROM webhook_subscriptions s
                     WHERE s.organization_id = $1 AND s.id = $2 RETURNING *)
                 SELECT s.id, s.organization_id, s.url, s.filter_types, s.description,
                        s.disabled, s.disabled_reason, s.secret, s.created_at, s.updated_at,
                        'unknown' AS health_status
                 FROM s",
            &[&organization_id, &id],
        )
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Sends again every failed delivery to the subscription whose message is
/// from `since` to `until` (now when `None`): they are pending, due now,
/// with a fresh set of attempts. How many.
pub async fn recover(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<Option<u64>, StoreError> {
    let row = client
        .query_opt(
            "WITH s AS (
                 SELECT id FROM webhook_subscriptions
                 WHERE organization_id = $1 AND id = $2 AND NOT disabled
             ), recovered AS (
                 UPDATE webhook_deliveries d SET state = 'pending', attempts = 0,
                                                 next_attempt_at = clock_timestamp()
                 FROM s
                 WHERE d.subscription_id = s.id AND d.state = 'failed'
                   AND d.created_at >= $3 AND d.created_at <= COALESCE($4, now())
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM recovered) AS n, EXISTS (SELECT 1 FROM s) AS found,
                    EXISTS (SELECT 1 FROM webhook_subscriptions
                            WHERE organization_id = $1 AND id = $2) AS exists",
            &[&organization_id, &id, &since, &until],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    if !row.try_get::<_, bool>("exists")? {
        return Ok(None);
    }
    let n: i64 = row.try_get("n")?;
    Ok(Some(n.unsigned_abs()))
}
