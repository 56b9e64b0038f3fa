//! The reaper's statement: jobs nobody works on are moved on.

use deadpool_postgres::GenericClient;
use syncway_model::{JobMessage, JobStatus, attempts};
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::parse_status;

/// What one pass of [`reap`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// The jobs enqueued again (`requeued` of them).
    pub requeued_jobs: Vec<Uuid>,
    /// Jobs whose message was enqueued again.
    pub requeued: u64,
    /// Jobs ended `failed`: their attempts were used up.
    pub failed: u64,
    /// `cancelling` jobs whose worker died, ended `cancelled`.
    pub cancelled: u64,
}

/// How many pending jobs should have a message waiting in the jobs queue
/// (not held, nothing in the outbox), counted only when one of them has
/// waited longer than `requeue_after` (0 otherwise: nothing to suspect).
/// The reaper compares it with the queue's depth: when the queue holds
/// fewer messages, that many are gone.
pub async fn pending_published(
    client: &impl GenericClient,
    requeue_after: std::time::Duration,
) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            include_str!("pending_count.sql"),
            &[&requeue_after.as_secs_f64()],
        )
        .await?;
    Ok(row.try_get("published")?)
}

/// Finds the jobs nobody is working on and nothing will deliver (see
/// `reap_candidates.sql` and the phase table in [`super::phase`]) and moves
/// each on, in one transaction: a `cancelling` one ends `cancelled`; a
/// `running` one whose attempts are used up ([`attempts::may_run_again`])
/// ends `failed`; any other is re-enqueued, and the next claim takes it
/// over (a duplicate message is harmless: the claim runs a job once).
/// Pending jobs are re-enqueued only when their messages are gone:
/// `pending_missing` of them at most (the caller's count, see
/// [`pending_published`]), the oldest first; a healthy backlog, however
/// old, is left alone. Deleted jobs' tombstones older than a week are
/// pruned, and so is what full syncs that ended without their worker's
/// final commit saw.
pub async fn reap(
    client: &mut deadpool_postgres::Object,
    grace: std::time::Duration,
    requeue_after: std::time::Duration,
    max_attempts: i32,
    pending_missing: i64,
) -> Result<Reaped, StoreError> {
    let transaction = client.transaction().await?;
    let rows = transaction
        .query(
            include_str!("reap_candidates.sql"),
            &[
                &grace.as_secs_f64(),
                &requeue_after.as_secs_f64(),
                &pending_missing.max(0),
            ],
        )
        .await?;
    let mut reaped = Reaped::default();
    let mut requeue_ids = Vec::new();
    let mut payloads = Vec::new();
    let mut cancel_ids = Vec::new();
    let mut fail_ids: Vec<Uuid> = Vec::new();
    let mut fail_errors = Vec::new();
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        let status = parse_status(row.try_get("status")?)?;
        let attempt: i32 = row.try_get("attempt")?;
        match status {
            JobStatus::Cancelling => cancel_ids.push(id),
            JobStatus::Running if !attempts::may_run_again(attempt, max_attempts) => {
                fail_ids.push(id);
                fail_errors.push(attempts::exhausted(attempt));
            }
            _ => {
                requeue_ids.push(id);
                payloads.push(JobMessage::new(id, row.try_get("source_connection_id")?).encode());
            }
        }
    }
    if !cancel_ids.is_empty() {
        reaped.cancelled = transaction
            .execute(include_str!("reap_cancel.sql"), &[&cancel_ids])
            .await?;
    }
    if !fail_ids.is_empty() {
        reaped.failed = transaction
            .execute(include_str!("reap_fail.sql"), &[&fail_ids, &fail_errors])
            .await?;
    }
    if !requeue_ids.is_empty() {
        transaction
            .execute(include_str!("reap_requeue.sql"), &[&requeue_ids])
            .await?;
        reaped.requeued = crate::outbox::enqueue(&transaction, &requeue_ids, &payloads).await?;
        reaped.requeued_jobs = requeue_ids;
    }
    transaction
        .execute(include_str!("reap_seen.sql"), &[])
        .await?;
    transaction.commit().await?;
    Ok(reaped)
}

/// Terminates the sessions of workers whose leases ran out that wait on
/// their own client inside a transaction for longer than `bound` (see
/// `terminate_stuck.sql`): a frozen worker's locks go with them. Returns
/// the workers whose sessions were terminated (one name per session).
pub async fn terminate_stuck(
    client: &impl GenericClient,
    bound: std::time::Duration,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(include_str!("terminate_stuck.sql"), &[&bound.as_secs_f64()])
        .await?;
    rows.iter()
        .filter(|row| row.try_get::<_, bool>("terminated").unwrap_or(false))
        .map(|row| Ok(row.try_get("application_name")?))
        .collect()
}
