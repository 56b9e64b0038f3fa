//! The transactional outbox: messages written with their job, deleted only
//! after the broker confirmed them. A row holds one message, or the batch a
//! statement that makes jobs wrote (V23).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use syncway_model::Route;
use uuid::Uuid;

use crate::StoreError;

/// One outbox row: one message, or a statement's batch of messages that
/// all go the same way (V23), published and deleted together.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    /// The row's messages, in order: each job's id and its payload.
    pub messages: Vec<(Uuid, Vec<u8>)>,
    pub route: Route,
    /// When the broker first refused it (nack), if it did.
    pub refused_since: Option<DateTime<Utc>>,
}

/// What a take returns of each row it deletes: [`row_from_sql`] reads it.
macro_rules! returning_row {
    () => {
        "RETURNING id, job_id, payload, kind, delay_ms, refused_since, more_job_ids, more_payloads"
    };
}

/// Removes up to `limit` of the oldest rows and returns them, skipping rows
/// another relay holds (relays in several processes share the work). Call
/// it in a transaction, and commit only after the broker confirmed every
/// message: rolling back puts them all back.
pub async fn take_oldest(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let statement = client
        .prepare_cached(concat!(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE held_until IS NULL OR held_until <= now()
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) ",
            returning_row!()
        ))
        .await?;
    let rows = client.query(&statement, &[&limit]).await?;
    let mut taken = rows
        .iter()
        .map(row_from_sql)
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING has no order; publish oldest first.
    taken.sort_unstable_by_key(|row| row.id);
    Ok(taken)
}

fn row_from_sql(row: &tokio_postgres::Row) -> Result<OutboxRow, StoreError> {
    let more_job_ids: Vec<Uuid> = row.try_get(6)?;
    let more_payloads: Vec<Vec<u8>> = row.try_get(7)?;
    let mut messages = Vec::with_capacity(1 + more_job_ids.len());
    messages.push((row.try_get(1)?, row.try_get(2)?));
    // outbox_batch_shape (V23) keeps the two arrays the same length.
    messages.extend(more_job_ids.into_iter().zip(more_payloads));
    Ok(OutboxRow {
        id: row.try_get(0)?,
        messages,
        route: match row.try_get::<_, &str>(3)? {
            "control" => Route::Control,
            "manual" => Route::Manual,
            _ => Route::Jobs {
                delay_ms: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or(0),
            },
        },
        refused_since: row.try_get(5)?,
    })
}

/// Leaves a row the broker refused in the outbox for `hold` before it is
/// tried again, noting when it was first refused.
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

/// Messages waiting to be published (a batch row counts each of its own).
pub async fn depth(client: &impl GenericClient) -> Result<i64, StoreError> {
    let row = client
        .query_one("SELECT count(*) FROM outbox_jobs", &[])
        .await?;
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

/// Takes one row back out of the outbox by id (the relay publishing rows
/// on their own after a refusal); `None` when another relay has it.
pub async fn take(client: &impl GenericClient, id: i64) -> Result<Option<OutboxRow>, StoreError> {
    let row = client
        .query_opt(
            concat!(
                "DELETE FROM outbox WHERE id = (SELECT id FROM outbox WHERE id = $1 FOR UPDATE SKIP LOCKED) ",
                returning_row!()
            ),
            &[&id],
        )
        .await?;
    row.as_ref().map(row_from_sql).transpose()
}
