//! Held jobs (V14, V20): held back by their organization's share, their
//! source type's cap or a pause, they wait in Postgres, costing no claim
//! and no message, until what holds them lets go.

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
    release(
        client,
        include_str!("release_held.sql"),
        &[&organization, &count],
    )
    .await
}

/// Lets up to `count` jobs go that a pause held and no pause holds any
/// more, fairly across organizations (see [`release_held`]).
pub async fn release_unpaused(
    client: &mut deadpool_postgres::Object,
    count: i64,
) -> Result<Vec<Uuid>, StoreError> {
    release(client, include_str!("release_unpaused.sql"), &[&count]).await
}

/// Lets up to `count` of the jobs held by `short_name`'s cap go, fairly
/// across organizations (see [`release_held`]).
pub async fn release_source_type(
    client: &mut deadpool_postgres::Object,
    short_name: &str,
    count: i64,
) -> Result<Vec<Uuid>, StoreError> {
    release(
        client,
        include_str!("release_source_type.sql"),
        &[&short_name, &count],
    )
    .await
}

/// Runs a release statement (it returns the released jobs' `id` and
/// `source_connection_id`) and queues a message for each, in one
/// transaction.
async fn release(
    client: &mut deadpool_postgres::Object,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Uuid>, StoreError> {
    let transaction = client.transaction().await?;
    let rows = transaction.query(sql, params).await?;
    let ids = requeue(&transaction, &rows).await?;
    transaction.commit().await?;
    Ok(ids)
}

/// The capped source types that have held jobs, each with the room its
/// cap has left: `(short_name, room)`.
pub async fn source_type_room(
    client: &impl GenericClient,
    caps: &[(String, i32)],
) -> Result<Vec<(String, i64)>, StoreError> {
    let names: Vec<&str> = caps.iter().map(|(name, _)| name.as_str()).collect();
    let limits: Vec<i32> = caps.iter().map(|(_, cap)| *cap).collect();
    let rows = client
        .query(include_str!("source_type_room.sql"), &[&names, &limits])
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("short_name")?, row.try_get("room")?)))
        .collect()
}

/// Queues a message for each released job (rows of `id`,
/// `source_connection_id`), in the caller's transaction.
async fn requeue(
    transaction: &deadpool_postgres::Transaction<'_>,
    rows: &[tokio_postgres::Row],
) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        ids.push(id);
        payloads.push(JobMessage::new(id, row.try_get("source_connection_id")?).encode());
    }
    if !ids.is_empty() {
        crate::outbox::enqueue(transaction, &ids, &payloads).await?;
    }
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
