//! The lease while a worker runs a job: renewing it, handing it back.

use deadpool_postgres::GenericClient;
use syncway_model::JobStatus;
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::parse_status;

/// Extends the lease of the run whose claim drew `lease` (its token).
/// Returns the job's status, or `None` when that claim no longer holds the
/// job (the run must stop writing).
pub async fn heartbeat(
    client: &impl GenericClient,
    job_id: Uuid,
    lease: Uuid,
    lease_seconds: f64,
) -> Result<Option<JobStatus>, StoreError> {
    let statement = client.prepare_cached(include_str!("heartbeat.sql")).await?;
    let row = client
        .query_opt(&statement, &[&job_id, &lease, &lease_seconds])
        .await?;
    row.map(|row| parse_status(row.try_get("status")?))
        .transpose()
}

/// Gives the job up without ending it (shutdown): the lease is released so
/// that the next claim takes the job over at once and resumes from what was
/// committed. Returns false when the run's claim (`lease`) did not hold it
/// any more.
pub async fn release(
    client: &impl GenericClient,
    job_id: Uuid,
    lease: Uuid,
) -> Result<bool, StoreError> {
    let released = client
        .execute(include_str!("release.sql"), &[&job_id, &lease])
        .await?;
    Ok(released == 1)
}
