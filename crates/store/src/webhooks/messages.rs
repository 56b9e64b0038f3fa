//! Webhook messages and their delivery attempts, as an organization reads
//! them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct Message {
    pub id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// One attempt, or a delivery still waiting for its next one
/// (`status` `pending`, at the time it is due, with an id that stays the
/// same until it is made).
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub id: Uuid,
    pub message_id: Uuid,
    pub subscription_id: Uuid,
    pub url: String,
    pub response: String,
    pub response_status_code: Option<i32>,
    /// `success`, `failed` or `pending`.
    pub status: String,
    pub at: DateTime<Utc>,
}

/// The organization's newest messages (of `event_types`, when any are
/// given), at most `limit`.
pub async fn list(
    client: &impl GenericClient,
    organization_id: Uuid,
    event_types: &[String],
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    let rows = client
        .query(
            "SELECT id, event_type, payload, created_at FROM webhook_messages
             WHERE organization_id = $1 AND (cardinality($2::text[]) = 0 OR event_type = ANY ($2))
             ORDER BY created_at DESC, id DESC LIMIT $3",
            &[&organization_id, &event_types, &limit],
        )
        .await?;
    rows.iter().map(message_row).collect()
}

fn message_row(row: &tokio_postgres::Row) -> Result<Message, StoreError> {
    Ok(Message {
        id: row.try_get(0)?,
        event_type: row.try_get(1)?,
        payload: row.try_get(2)?,
        created_at: row.try_get(3)?,
    })
}

pub async fn find(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Message>, StoreError> {
    let row = client
        .query_opt(
            "SELECT id, event_type, payload, created_at FROM webhook_messages
             WHERE organization_id = $1 AND id = $2",
            &[&organization_id, &id],
        )
        .await?;
    row.as_ref().map(message_row).transpose()
}

/// Attempts as [`AttemptRow`] reads them, before the condition.
const ATTEMPTS: &str = "SELECT a.id, a.message_id, a.subscription_id, a.url, a.response,
    a.response_status_code, CASE WHEN a.succeeded THEN 'success' ELSE 'failed' END AS status, a.at
    FROM webhook_attempts a WHERE";

/// A message's attempts, oldest first, then each delivery still pending.
pub async fn attempts(
    client: &impl GenericClient,
    message_id: Uuid,
) -> Result<Vec<AttemptRow>, StoreError> {
    let rows = client
        .query(
            &format!(
                "{ATTEMPTS} a.message_id = $1
             UNION ALL
             SELECT md5(d.message_id::text || d.subscription_id::text)::uuid, d.message_id,
                    d.subscription_id, s.url, '', NULL,
                    'pending', d.next_attempt_at
             FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
             WHERE d.message_id = $1 AND d.state = 'pending'
             ORDER BY 8"
            ),
            &[&message_id],
        )
        .await?;
    rows.iter().map(attempt_row).collect()
}

fn attempt_row(row: &tokio_postgres::Row) -> Result<AttemptRow, StoreError> {
    Ok(AttemptRow {
        id: row.try_get(0)?,
        message_id: row.try_get(1)?,
        subscription_id: row.try_get(2)?,
        url: row.try_get(3)?,
        response: row.try_get(4)?,
        response_status_code: row.try_get(5)?,
        status: row.try_get(6)?,
        at: row.try_get(7)?,
    })
}

/// A subscription's newest attempts, newest first, at most `limit`.
pub async fn recent_attempts(
    client: &impl GenericClient,
    subscription_id: Uuid,
    limit: i64,
) -> Result<Vec<AttemptRow>, StoreError> {
    let rows = client
        .query(
            &format!(
                "{ATTEMPTS} a.subscription_id = $1
             ORDER BY a.at DESC LIMIT $2"
            ),
            &[&subscription_id, &limit],
        )
        .await?;
    rows.iter().map(attempt_row).collect()
}
