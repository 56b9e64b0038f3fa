//! A full sync: a fresh slot (when syncway owns it), then every row of
//! every table from one REPEATABLE READ snapshot taken after the slot's
//! start, so nothing between snapshot and stream is missed. The cursor
//! keeps the snapshot, so the stream later skips the transactions it saw:
//! nothing is applied twice.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use tokio_postgres::{Client, IsolationLevel};

use super::rows::{Cursor, Shape, Snapshot};
use super::{FETCH_ROWS, Names, Pending, Plan, Sender, setup};
use crate::SourceError;
use crate::postgres::classify;

/// How long the snapshot waits for transactions that were running when
/// the slot started (they must be in it or in the stream).
const SETTLE: Duration = Duration::from_secs(60);

pub async fn read(
    client: &mut Client,
    plan: &Plan,
    names: &Names,
    shapes: &[Shape],
    sender: &Sender,
) -> Result<(), SourceError> {
    setup::ensure_publication(client, names, &plan.config).await?;
    let start = match setup::slot_position(client, &names.slot).await? {
        // A fresh slot: its WAL and its position start now.
        Some(_) if plan.config.create_slot => {
            setup::drop_slot(client, &names.slot).await?;
            setup::create_slot(client, &names.slot).await?
        }
        Some(position) => position,
        None if plan.config.create_slot => setup::create_slot(client, &names.slot).await?,
        None => {
            return Err(SourceError::Permanent(format!(
                "replication slot {} does not exist, and create_slot is false",
                names.slot
            )));
        }
    };
    settle(client).await?;
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|error| classify(error, "starting the snapshot"))?;
    let row = transaction
        .query_one(
            "SELECT pg_current_snapshot()::text, pg_current_wal_lsn()::text",
            &[],
        )
        .await
        .map_err(|error| classify(error, "taking the snapshot"))?;
    let mut cursor = Cursor {
        slot: names.slot.clone(),
        lsn: start,
        complete: false,
        snapshot: Some(row.get(0)),
        snapshot_lsn: Some(row.get(1)),
    };
    let mut pending = Pending::default();
    for shape in shapes {
        let columns: Vec<String> = shape
            .columns
            .iter()
            .map(|(name, _, _)| format!("{}::text", setup::quote(name)))
            .collect();
        let sql = format!(
            "DECLARE syncway_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {}.{}",
            columns.join(", "),
            setup::quote(&shape.schema),
            setup::quote(&shape.name)
        );
        transaction
            .batch_execute(&sql)
            .await
            .map_err(|error| classify(error, "reading a table"))?;
        let fetch = format!("FETCH {FETCH_ROWS} FROM syncway_snapshot");
        loop {
            let rows = transaction
                .query_raw(fetch.as_str(), super::NO_PARAMETERS)
                .await
                .map_err(|error| classify(error, "reading a table"))?;
            futures_util::pin_mut!(rows);
            let mut fetched = 0u64;
            while let Some(row) = rows
                .try_next()
                .await
                .map_err(|error| classify(error, "reading a table"))?
            {
                fetched += 1;
                let values = super::rows::datums(&row, shape.columns.len());
                pending.upsert(shape, &values, &plan.limits);
                if pending.is_over(plan, true) && !pending.flush(sender, Some(&cursor)).await {
                    return Ok(());
                }
            }
            if fetched < FETCH_ROWS {
                break;
            }
        }
        transaction
            .batch_execute("CLOSE syncway_snapshot")
            .await
            .map_err(|error| classify(error, "reading a table"))?;
    }
    cursor.complete = true;
    pending.flush(sender, Some(&cursor)).await;
    Ok(())
}

/// Waits until every transaction running now has ended, so that one that
/// committed before the slot's start is visible to the snapshot.
async fn settle(client: &Client) -> Result<(), SourceError> {
    let running: String = client
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(|error| classify(error, "reading running transactions"))?
        .get(0);
    let Some(snapshot) = Snapshot::parse(&running) else {
        return Ok(());
    };
    let deadline = Instant::now() + SETTLE;
    for xid in snapshot.running() {
        loop {
            let status: Option<String> = client
                .query_one("SELECT pg_xact_status($1::text::xid8)", &[&xid.to_string()])
                .await
                .map_err(|error| classify(error, "reading a transaction's status"))?
                .get(0);
            if status.as_deref() != Some("in progress") {
                break;
            }
            if Instant::now() > deadline {
                return Err(SourceError::Transient {
                    message: format!(
                        "transaction {xid} on the source has run for over {} s; the \
                         snapshot waits for it to end",
                        SETTLE.as_secs()
                    ),
                    retry_after: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
