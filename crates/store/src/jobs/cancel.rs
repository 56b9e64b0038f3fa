//! Cancelling a job (the API).

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use syncway_model::{JobStatus, SourceConnectionJob};
use uuid::Uuid;

use super::read::find;
use crate::StoreError;
use crate::job_row::{job_from_row, with_job_columns};

static CANCEL: LazyLock<String> = LazyLock::new(|| with_job_columns(include_str!("cancel.sql")));

/// What a cancel request came to.
#[derive(Debug)]
pub enum Cancelled {
    /// `cancelled` when no worker held it (pending, waiting to retry or
    /// handed back), `cancelling` when one runs it.
    Done(Box<SourceConnectionJob>),
    NotFound,
    /// The job was already terminal or cancelling; nothing changed.
    Refused(JobStatus),
}

/// Cancels a job; `key_id`, the key that asked, goes into its timeline.
pub async fn cancel(
    client: &impl GenericClient,
    organization_id: Uuid,
    source_connection_id: Uuid,
    job_id: Uuid,
    key_id: Option<Uuid>,
) -> Result<Cancelled, StoreError> {
    let control = syncway_model::ControlMessage::cancel(job_id).encode();
    let row = client
        .query_opt(
            CANCEL.as_str(),
            &[
                &job_id,
                &source_connection_id,
                &organization_id,
                &control,
                &key_id,
            ],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Cancelled::Done(Box::new(job_from_row(&row)?)));
    }
    Ok(
        match find(client, organization_id, source_connection_id, job_id).await? {
            Some(job) => Cancelled::Refused(job.status),
            None => Cancelled::NotFound,
        },
    )
}

/// Cancels many jobs in one statement, as [`cancel`] cancels one; with
/// `organization_id`, only that organization's. Returns the ids it
/// cancelled (or began to: a running job becomes `cancelling`).
pub async fn cancel_many(
    client: &impl GenericClient,
    job_ids: &[Uuid],
    organization_id: Option<Uuid>,
    key_id: Option<Uuid>,
) -> Result<Vec<Uuid>, StoreError> {
    let controls: Vec<Vec<u8>> = job_ids
        .iter()
        .map(|id| syncway_model::ControlMessage::cancel(*id).encode())
        .collect();
    let statement = client
        .prepare_cached(include_str!("cancel_many.sql"))
        .await?;
    let rows = client
        .query(
            &statement,
            &[&job_ids, &organization_id, &controls, &key_id],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
}
