//! A job that will run again later (a transient failure), or never (its
//! message cannot be published).

use deadpool_postgres::GenericClient;
use syncway_model::JobMessage;
use uuid::Uuid;

use crate::StoreError;

/// A transient failure with attempts left: the job stays `running` with no
/// lease owner (phase `retry_wait`), is not claimed before `delay` has
/// passed, and its message goes (through the outbox, in the same
/// transaction) to a delay queue that hands it back to the jobs queue after
/// `delay`. `error` and `details` say what failed and when the next attempt
/// is due. Returns false when the run's claim (`lease`, its token) no
/// longer holds the job (nothing was written).
pub async fn schedule_retry(
    client: &impl GenericClient,
    job: &JobMessage,
    lease: Uuid,
    delay: std::time::Duration,
    error: &str,
    details: &serde_json::Value,
) -> Result<bool, StoreError> {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let rows = client
        .query(
            include_str!("schedule_retry.sql"),
            &[
                &job.job_id,
                &lease,
                &delay_ms,
                &error,
                details,
                &job.encode(),
            ],
        )
        .await?;
    Ok(rows.len() == 1)
}

/// Fails the jobs whose messages the broker refused (the relay set their
/// outbox row aside), except those that already ended. Returns how many it
/// failed.
pub async fn fail_unpublishable(
    client: &impl GenericClient,
    job_ids: &[Uuid],
    reason: &str,
) -> Result<u64, StoreError> {
    Ok(client
        .execute(include_str!("fail_unpublishable.sql"), &[&job_ids, &reason])
        .await?)
}
