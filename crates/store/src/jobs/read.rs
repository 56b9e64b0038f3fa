//! Reading jobs: one, a connection's, and whether one was deleted.

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use syncway_model::SourceConnectionJob;
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::{job_from_row, with_job_columns};

static FIND: LazyLock<String> = LazyLock::new(|| with_job_columns(include_str!("find.sql")));
static FIND_ANY: LazyLock<String> =
    LazyLock::new(|| with_job_columns("SELECT {JOB_COLUMNS} FROM sync_jobs j WHERE j.id = $1"));
static LIST: LazyLock<String> = LazyLock::new(|| with_job_columns(include_str!("list.sql")));

/// A job of the organization's connection.
pub async fn find(
    client: &impl GenericClient,
    organization_id: Uuid,
    source_connection_id: Uuid,
    job_id: Uuid,
) -> Result<Option<SourceConnectionJob>, StoreError> {
    let statement = client.prepare_cached(&FIND).await?;
    let row = client
        .query_opt(
            &statement,
            &[&job_id, &source_connection_id, &organization_id],
        )
        .await?;
    row.map(|row| job_from_row(&row)).transpose()
}

/// Any organization's job, by its id alone (the operator's view).
pub async fn find_any(
    client: &impl GenericClient,
    job_id: Uuid,
) -> Result<Option<SourceConnectionJob>, StoreError> {
    let statement = client.prepare_cached(&FIND_ANY).await?;
    let row = client.query_opt(&statement, &[&job_id]).await?;
    row.map(|row| job_from_row(&row)).transpose()
}

/// A connection's jobs, newest first. The caller checks the connection.
pub async fn list(
    client: &impl GenericClient,
    source_connection_id: Uuid,
    limit: i64,
) -> Result<Vec<SourceConnectionJob>, StoreError> {
    let statement = client.prepare_cached(&LIST).await?;
    let rows = client
        .query(&statement, &[&source_connection_id, &limit])
        .await?;
    rows.iter().map(job_from_row).collect()
}

/// Whether the job was deleted with its connection (within the last week).
pub async fn was_deleted(client: &impl GenericClient, job_id: Uuid) -> Result<bool, StoreError> {
    let row = client
        .query_opt("SELECT 1 FROM deleted_jobs WHERE job_id = $1", &[&job_id])
        .await?;
    Ok(row.is_some())
}
