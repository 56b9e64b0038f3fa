//! The transactional outbox: messages written with their job, deleted only
//! after the broker confirmed them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use syncway_model::Route;
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: i64,
    pub job_id: Uuid,
    pub payload: Vec<u8>,
    pub route: Route,
    /// When the broker first refused it (nack), if it did.
    pub refused_since: Option<DateTime<Utc>>,
}

/// Removes up to `limit` of the oldest messages and returns them, skipping
/// rows another relay holds (relays in several processes share the work).
/// Call it in a transaction, and commit only after the broker confirmed
/// every message: rolling back puts them all back.
pub async fn take_oldest(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let statement = client
        .prepare_cached(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE held_until IS NULL OR held_until <= now()
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, job_id, payload, kind, delay_ms, refused_since",
        )
        .await?;
    let rows = client.query(&statement, &[&limit]).await?;
    let mut messages: Vec<OutboxMessage> = rows.iter().map(message_from_row).collect();
    // RETURNING has no order; publish oldest first.
    messages.sort_unstable_by_key(|message| message.id);
    Ok(messages)
}

fn message_from_row(row: &tokio_postgres::Row) -> OutboxMessage {
    OutboxMessage {
        id: row.get(0),
        job_id: row.get(1),
        payload: row.get(2),
        route: match row.get::<_, &str>(3) {
            "control" => Route::Control,
            "manual" => Route::Manual,
            _ => Route::Jobs {
                delay_ms: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
            },
        },
        refused_since: row.get(5),
    }
}

/// Leaves a message the broker refused in the outbox for `hold` before it
/// is tried again, noting when it was first refused.
pub async fn hold(
    client: &impl GenericClient,
    id: i64,
    hold: std::time::Duration,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE outbox SET held_until = now() + make_interval(secs => $2),
                               refused_since = COALESCE(refused_since, now())
             WHERE id = $1",
            &[&id, &hold.as_secs_f64()],
        )
        .await?;
    Ok(())
}

/// Messages waiting to be published.
pub async fn depth(client: &impl GenericClient) -> Result<i64, StoreError> {
    let row = client.query_one("SELECT count(*) FROM outbox", &[]).await?;
    Ok(row.get(0))
}

/// Queues job messages for existing jobs (the reaper's re-enqueue, a held
/// job let go): one message per job id, `payloads` in the same order; a job
/// triggered through the API goes to the manual-runs queue again. Returns
/// how many.
pub async fn enqueue(
    client: &impl GenericClient,
    job_ids: &[Uuid],
    payloads: &[Vec<u8>],
) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            "INSERT INTO outbox (job_id, payload, kind)
             SELECT m.id, m.payload, CASE WHEN j.trigger = 'api' THEN 'manual' ELSE 'job' END
             FROM unnest($1::uuid[], $2::bytea[]) AS m(id, payload)
             LEFT JOIN sync_jobs j ON j.id = m.id",
            &[&job_ids, &payloads],
        )
        .await?)
}

/// Queues a job message that the relay publishes to a delay queue, so that
/// it comes back to the jobs queue after `delay_ms` (a job held back by the
/// fair share).
pub async fn enqueue_delayed(
    client: &impl GenericClient,
    job_id: Uuid,
    payload: &[u8],
    delay_ms: i64,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO outbox (job_id, payload, kind, delay_ms) VALUES ($1, $2, 'job', $3)",
            &[&job_id, &payload, &delay_ms],
        )
        .await?;
    Ok(())
}

/// Takes one message back out of the outbox by id (the relay setting aside
/// a message the broker refused); `None` when another relay has it.
pub async fn take(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<OutboxMessage>, StoreError> {
    let row = client
        .query_opt(
            "DELETE FROM outbox WHERE id = (SELECT id FROM outbox WHERE id = $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, job_id, payload, kind, delay_ms, refused_since",
            &[&id],
        )
        .await?;
    Ok(row.map(|row| message_from_row(&row)))
}
