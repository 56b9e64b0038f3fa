//! The transactional outbox: messages written with their job, deleted only
//! after the broker confirmed them.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: i64,
    pub job_id: Uuid,
    pub payload: Vec<u8>,
    pub kind: MessageKind,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A job message, to the jobs queue; with a delay (a retry), through a
    /// delay queue first.
    Job { delay_ms: u64 },
    /// A control message (cancel), to every worker.
    Control,
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
                 SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, job_id, payload, kind, delay_ms",
        )
        .await?;
    let rows = client.query(&statement, &[&limit]).await?;
    let mut messages: Vec<OutboxMessage> = rows
        .iter()
        .map(|row| OutboxMessage {
            id: row.get(0),
            job_id: row.get(1),
            payload: row.get(2),
            kind: match row.get::<_, &str>(3) {
                "control" => MessageKind::Control,
                _ => MessageKind::Job {
                    delay_ms: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
                },
            },
        })
        .collect();
    // RETURNING has no order; publish oldest first.
    messages.sort_unstable_by_key(|message| message.id);
    Ok(messages)
}

/// Messages waiting to be published.
pub async fn depth(client: &impl GenericClient) -> Result<i64, StoreError> {
    let row = client.query_one("SELECT count(*) FROM outbox", &[]).await?;
    Ok(row.get(0))
}

/// Queues a message for an existing job (re-enqueue).
pub async fn enqueue(
    client: &impl GenericClient,
    job_id: Uuid,
    payload: &[u8],
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO outbox (job_id, payload) VALUES ($1, $2)",
            &[&job_id, &payload],
        )
        .await?;
    Ok(())
}
