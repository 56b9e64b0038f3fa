//! The deliverers' side: claiming due deliveries under a lease, recording
//! each attempt, and the backlog figure.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// A delivery a deliverer holds.
#[derive(Debug, Clone)]
pub struct Due {
    pub message_id: Uuid,
    pub subscription_id: Uuid,
    /// Attempts made before this one.
    pub attempts: i32,
    pub url: String,
    pub event_type: String,
    /// The payload, as it is sent.
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The sealed secrets that sign now: the current one, then the
    /// rotated-out one while its day lasts.
    pub secrets: Vec<Vec<u8>>,
}

/// How a deliverer claims.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits {
    /// Deliveries at most.
    pub count: i64,
    /// In flight per subscription at most (1 while it is failing).
    pub per_subscription: i32,
    /// How long the deliverer holds them.
    pub lease_seconds: f64,
}

pub async fn claim(
    client: &impl GenericClient,
    owner: &str,
    limits: ClaimLimits,
) -> Result<Vec<Due>, StoreError> {
    let statement = client.prepare_cached(include_str!("claim.sql")).await?;
    let rows = client
        .query(
            &statement,
            &[
                &owner,
                &limits.lease_seconds,
                &limits.count,
                &limits.per_subscription,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Due {
                message_id: row.try_get("message_id")?,
                subscription_id: row.try_get("subscription_id")?,
                attempts: row.try_get("attempts")?,
                url: row.try_get("url")?,
                event_type: row.try_get("event_type")?,
                body: row.try_get("body")?,
                created_at: row.try_get("created_at")?,
                secrets: std::iter::once(row.try_get::<_, Vec<u8>>("secret")?)
                    .chain(row.try_get::<_, Option<Vec<u8>>>("previous_secret")?)
                    .collect(),
            })
        })
        .collect()
}

/// One attempt's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status_code: Option<i32>,
    pub response: String,
    pub delivered: bool,
    /// When to try again; `None`: no attempt is left.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The endpoint answered 410 Gone.
    pub gone: bool,
}

/// What recording did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The deliverer still held the delivery (its outcome counts).
    pub held: bool,
    /// The subscription was disabled by these outcomes.
    pub disabled: bool,
}

/// Records the outcomes of many attempts in one statement; the answers
/// are in the order given.
pub async fn record_many(
    client: &impl GenericClient,
    owner: &str,
    outcomes: &[(&Due, &Outcome)],
    disable_after_hours: i32,
) -> Result<Vec<Recorded>, StoreError> {
    let attempt_ids: Vec<Uuid> = outcomes.iter().map(|_| Uuid::now_v7()).collect();
    let messages: Vec<Uuid> = outcomes.iter().map(|(due, _)| due.message_id).collect();
    let subscriptions: Vec<Uuid> = outcomes
        .iter()
        .map(|(due, _)| due.subscription_id)
        .collect();
    let urls: Vec<&str> = outcomes.iter().map(|(due, _)| due.url.as_str()).collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|(_, o)| o.status_code).collect();
    let responses: Vec<&str> = outcomes.iter().map(|(_, o)| o.response.as_str()).collect();
    let delivered: Vec<bool> = outcomes.iter().map(|(_, o)| o.delivered).collect();
    let next: Vec<Option<DateTime<Utc>>> =
        outcomes.iter().map(|(_, o)| o.next_attempt_at).collect();
    let gone: Vec<bool> = outcomes.iter().map(|(_, o)| o.gone).collect();
    let statement = client
        .prepare_cached(include_str!("record_many.sql"))
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &attempt_ids,
                &messages,
                &subscriptions,
                &urls,
                &codes,
                &responses,
                &delivered,
                &next,
                &gone,
                &owner,
                &disable_after_hours,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Recorded {
                held: row.try_get("held")?,
                disabled: row.try_get("disabled")?,
            })
        })
        .collect()
}

/// Deliveries due now and not held: what the deliverers are behind by.
pub async fn backlog(client: &impl GenericClient) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= now()
               AND (lease_until IS NULL OR lease_until <= now())",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}
