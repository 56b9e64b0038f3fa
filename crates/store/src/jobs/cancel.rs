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
    Done(SourceConnectionJob),
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
        return Ok(Cancelled::Done(job_from_row(&row)?));
    }
    Ok(
        match find(client, organization_id, source_connection_id, job_id).await? {
            Some(job) => Cancelled::Refused(job.status),
            None => Cancelled::NotFound,
        },
    )
}
