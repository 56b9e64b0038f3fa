//! Large batches ([`BULK_ENTITIES`] or more): one transaction per batch
//! that locks the job's row (the fence), finds which entities are new,
//! changed or unchanged, COPYs the new ones straight into `entities`
//! (binary COPY: Postgres' bulk insert path, the one `copy-limit.sh`
//! measures) and runs the commit statement for the rest. An unchanged
//! entity costs a primary-key probe and its id in the batch's seen row;
//! nothing of its row is written.

use std::pin::pin;

use syncway_model::JobStatus;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::commit::{Commit, Counts, EntityWrite, JsonText, Part, commit_parts};
use crate::StoreError;
use crate::job_row::parse_status;

/// Batches with at least this many entities take [`commit_bulk`]; smaller
/// ones share [`super::commit_many`] statements with other jobs'.
pub const BULK_ENTITIES: usize = super::commit::FRESH_PLAN_ENTITIES;

/// How [`commit_bulk`] finds the batch's new entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Probe every entity first.
    First,
    /// As far as the run knows, none of them is stored (the connection had
    /// no entities when the job was claimed, and no batch of the run found
    /// one): copy them all without probing. Should one be stored after all,
    /// the COPY fails on the primary key, nothing of it stays, and the
    /// batch is probed.
    Skip,
}

/// What [`commit_bulk`] came to.
#[derive(Debug)]
pub struct Bulk {
    /// As [`super::commit_many`]'s: `None` when the job was not ours.
    pub written: Option<(JobStatus, Counts)>,
    /// [`Probe::Skip`] was wrong: the batch held stored entities.
    pub found_stored: bool,
}

/// Commits one job's large batch in one transaction; see the module.
pub async fn commit_bulk(
    client: &mut deadpool_postgres::Object,
    lease_seconds: f64,
    commit: &Commit<'_>,
    probe: Probe,
) -> Result<Bulk, StoreError> {
    if probe == Probe::Skip {
        match attempt(client, lease_seconds, commit, Probe::Skip).await {
            Err(error) if error.constraint() == Some("entities_pkey") => {}
            written => {
                return Ok(Bulk {
                    written: written?,
                    found_stored: false,
                });
            }
        }
    }
    Ok(Bulk {
        written: attempt(client, lease_seconds, commit, Probe::First).await?,
        found_stored: probe == Probe::Skip,
    })
}

async fn attempt(
    client: &mut deadpool_postgres::Object,
    lease_seconds: f64,
    commit: &Commit<'_>,
    probe: Probe,
) -> Result<Option<(JobStatus, Counts)>, StoreError> {
    // Dropped without a commit, the transaction rolls back.
    let transaction = client.transaction().await?;
    let fence = transaction
        .query_opt(
            include_str!("bulk_fence.sql"),
            &[&commit.job_id, &commit.run_id, &commit.seq],
        )
        .await?;
    let Some(fence) = fence else {
        return Ok(None);
    };
    if !fence.try_get::<_, bool>("ours")? {
        if fence.try_get::<_, bool>("applied")? {
            // A replay: its counts are in the job already.
            let status = parse_status(fence.try_get("status")?)?;
            return Ok(Some((status, Counts::default())));
        }
        return Ok(None);
    }
    let batch = &commit.batch;
    let completes_full_sync = batch.full_sync
        && commit
            .outcome
            .is_some_and(|outcome| outcome.status == JobStatus::Completed);
    if completes_full_sync {
        // Its deletions compare every stored entity of the connection with
        // all the run saw: room for that comparison in memory.
        transaction
            .batch_execute("SET LOCAL work_mem = '64MB'")
            .await?;
    }
    let (new, changed, unchanged) = match probe {
        Probe::Skip => (batch.entities.iter().collect(), Vec::new(), Vec::new()),
        Probe::First => classify(&transaction, commit).await?,
    };
    copy_in(&transaction, commit, &new).await?;
    // What the batch saw besides its writes (kept only for full syncs).
    let seen: Vec<&str> = new
        .iter()
        .chain(&unchanged)
        .map(|entity| entity.entity_id.as_str())
        .collect();
    let part = Part {
        commit,
        writes: Some(&changed),
        seen: &seen,
        copied: i64::try_from(new.len())
            .map_err(|_| StoreError::Corrupt("a batch too large to count".into()))?,
    };
    let written = commit_parts(&transaction, lease_seconds, &[part])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a commit returned no result".into()))?;
    if written.is_some() {
        transaction.commit().await?;
    }
    Ok(written)
}

type Classified<'a> = (
    Vec<&'a EntityWrite>,
    Vec<&'a EntityWrite>,
    Vec<&'a EntityWrite>,
);

/// The batch's entities as (new, changed, unchanged).
async fn classify<'a>(
    client: &impl deadpool_postgres::GenericClient,
    commit: &Commit<'a>,
) -> Result<Classified<'a>, StoreError> {
    let entities = commit.batch.entities;
    let ids: Vec<&str> = entities.iter().map(|e| e.entity_id.as_str()).collect();
    let hashes: Vec<&[u8]> = entities.iter().map(|e| &e.content_hash[..]).collect();
    let rows = client
        .query(
            include_str!("bulk_probe.sql"),
            &[&commit.source_connection_id, &ids, &hashes],
        )
        .await?;
    // 0 unchanged, 1 new, 2 changed.
    let mut state = vec![0u8; entities.len()];
    for row in &rows {
        let place = usize::try_from(row.try_get::<_, i64>("ord")? - 1)
            .ok()
            .filter(|place| *place < entities.len())
            .ok_or_else(|| StoreError::Corrupt("a probe returned no such entity".into()))?;
        state[place] = if row.try_get("new")? { 1 } else { 2 };
    }
    let mut classified: Classified<'a> = (Vec::new(), Vec::new(), Vec::new());
    for (entity, state) in entities.iter().zip(state) {
        match state {
            1 => classified.0.push(entity),
            2 => classified.1.push(entity),
            _ => classified.2.push(entity),
        }
    }
    Ok(classified)
}

/// Inserts `entities` (not stored yet) with one binary COPY.
async fn copy_in(
    transaction: &deadpool_postgres::Transaction<'_>,
    commit: &Commit<'_>,
    entities: &[&EntityWrite],
) -> Result<(), StoreError> {
    if entities.is_empty() {
        return Ok(());
    }
    // While the COPY runs, the server waits for its rows from this process:
    // were it frozen mid-COPY, no Postgres timeout would end the
    // transaction (or the job's row lock); the reapers terminate such
    // sessions once the job's lease ran out (`jobs::terminate_stuck`).
    let sink = transaction
        .copy_in(
            "COPY entities (source_connection_id, entity_id, content_hash, payload) \
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(
        sink,
        &[Type::UUID, Type::TEXT, Type::BYTEA, Type::JSON],
    ));
    for entity in entities {
        writer
            .as_mut()
            .write(&[
                &commit.source_connection_id,
                &entity.entity_id,
                &&entity.content_hash[..],
                &JsonText(&entity.payload),
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}
