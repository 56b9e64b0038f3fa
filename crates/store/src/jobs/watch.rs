//! Reading jobs for their event streams (CONTRACT.md §8): a job with its
//! `version` (the count of its visible changes), found by the organization
//! that may watch it, and many watched jobs in one statement.

use deadpool_postgres::GenericClient;
use syncway_model::SourceConnectionJob;
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::{JOB_COLUMNS, job_from_row};

/// A job as it is now, and how many visible changes it has had.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub job: SourceConnectionJob,
    pub version: i64,
}

fn versioned(row: &tokio_postgres::Row) -> Result<Versioned, StoreError> {
    Ok(Versioned {
        job: job_from_row(row)?,
        version: row.try_get("job_version")?,
    })
}

/// A job of the organization, by its id; with `source_connection_id`, only
/// when it belongs to that connection.
pub async fn find_versioned(
    client: &impl GenericClient,
    organization_id: Uuid,
    source_connection_id: Option<Uuid>,
    job_id: Uuid,
) -> Result<Option<Versioned>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS}, j.version AS job_version FROM sync_jobs j
             JOIN source_connections s ON s.id = j.source_connection_id
             WHERE j.id = $1 AND s.organization_id = $2
               AND ($3::uuid IS NULL OR j.source_connection_id = $3)"
        ))
        .await?;
    let row = client
        .query_opt(
            &statement,
            &[&job_id, &organization_id, &source_connection_id],
        )
        .await?;
    row.as_ref().map(versioned).transpose()
}

/// The watched jobs that still exist, in one statement (however many
/// streams watch them). The callers found each through its organization.
pub async fn read_many(
    client: &impl GenericClient,
    job_ids: &[Uuid],
) -> Result<Vec<Versioned>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS}, j.version AS job_version FROM sync_jobs j
             WHERE j.id = ANY($1)"
        ))
        .await?;
    let rows = client.query(&statement, &[&job_ids]).await?;
    rows.iter().map(versioned).collect()
}
