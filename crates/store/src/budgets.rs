//! Shared source budgets (V20): one row per host pattern of
//! `limits.source_requests_per_second`, drawn from by every request of every
//! job on every worker, so that the deployment as a whole keeps to it.
//!
//! Each budget is a GCRA: the row holds the theoretical arrival time (TAT)
//! of the next request. A request reserves the next slot in one statement,
//! moving the TAT on by the interval (1 / rate), and waits until its slot
//! comes: requests are spaced an interval apart deployment-wide, whatever
//! process makes them. A request never fails for want of budget; it waits.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// Reserves the next request slot of `pattern`'s budget (a request every
/// `interval`) and returns how long to wait for it (zero when the budget
/// has room now). The wait is measured on the database's clock, so workers'
/// clocks need not agree.
pub async fn reserve(
    client: &impl GenericClient,
    pattern: &str,
    interval: Duration,
) -> Result<Duration, StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO source_budgets AS b (pattern, tat)
             VALUES ($1, clock_timestamp() + make_interval(secs => $2))
             ON CONFLICT (pattern) DO UPDATE
                 SET tat = greatest(b.tat, clock_timestamp()) + make_interval(secs => $2)
             RETURNING greatest(0, extract(epoch FROM
                 b.tat - make_interval(secs => $2) - clock_timestamp()))::float8",
        )
        .await?;
    let row = client
        .query_one(&statement, &[&pattern, &interval.as_secs_f64()])
        .await?;
    let wait: f64 = row.try_get(0)?;
    Ok(Duration::try_from_secs_f64(wait).unwrap_or_default())
}

/// Says (or, with `None`, stops saying) why a running job waits: set while
/// it waits long for its source's budget. Fenced by the job's lease.
pub async fn set_waiting(
    client: &impl GenericClient,
    job_id: Uuid,
    lease: Uuid,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE sync_jobs SET waiting_reason = $3
             WHERE id = $1 AND lease_token = $2 AND active
               AND waiting_reason IS DISTINCT FROM $3",
        )
        .await?;
    client
        .execute(&statement, &[&job_id, &lease, &reason])
        .await?;
    Ok(())
}
