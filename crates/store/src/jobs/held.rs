//! Jobs held back by their organization's share (V14): they wait in
//! Postgres, costing no claim and no message, until a job of their
//! organization stops running and lets one go.

use deadpool_postgres::GenericClient;
use syncway_model::JobMessage;
use uuid::Uuid;

use crate::StoreError;

/// Lets up to `count` of `organization`'s held jobs go, oldest first: each
/// is no longer held and gets a message (through the outbox, in the same
/// transaction), for a claim to take it or hold it again. Returns them.
pub async fn release_held(
    client: &mut deadpool_postgres::Object,
    organization: Uuid,
    count: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let transaction = client.transaction().await?;
    let rows = transaction
        .query(include_str!("release_held.sql"), &[&organization, &count])
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        ids.push(id);
        payloads.push(JobMessage::new(id, row.try_get("source_connection_id")?).encode());
    }
    if !ids.is_empty() {
        crate::outbox::enqueue(&transaction, &ids, &payloads).await?;
    }
    transaction.commit().await?;
    Ok(ids)
}

/// The organizations that have held jobs, each with the room its share of
/// `cap` running jobs has left (its leased jobs and its pending jobs on
/// their way to a claim count against it): `(organization, room)`.
pub async fn release_room(
    client: &impl GenericClient,
    cap: i32,
) -> Result<Vec<(Uuid, i64)>, StoreError> {
    let rows = client.query(include_str!("held_room.sql"), &[&cap]).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("org")?, row.try_get("room")?)))
        .collect()
}
