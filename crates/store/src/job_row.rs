//! A `sync_jobs` row as clients see it, read by column name, and the check
//! that a batched statement answered one row per input.

use syncway_model::{JobStatus, SourceConnectionJob};
use tokio_postgres::Row;

use crate::StoreError;

/// The columns [`job_from_row`] reads, for a `sync_jobs` row aliased `j`.
/// Each is named `job_*`, so they can stand beside other tables' columns.
pub(crate) const JOB_COLUMNS: &str = "j.id AS job_id,
    j.source_connection_id AS job_source_connection_id, j.status AS job_status,
    j.started_at AS job_started_at, j.completed_at AS job_completed_at,
    j.entities_inserted AS job_entities_inserted, j.entities_updated AS job_entities_updated,
    j.entities_deleted AS job_entities_deleted, j.entities_failed AS job_entities_failed,
    j.error AS job_error, j.error_category AS job_error_category,
    j.error_details AS job_error_details, j.trigger AS job_trigger,
    j.scheduled_for AS job_scheduled_for,
    CASE WHEN NOT j.active THEN NULL
         WHEN j.waiting_reason IS NOT NULL THEN j.waiting_reason
         WHEN j.retry_at > now() THEN 'retry_backoff' END AS job_waiting_reason";

/// `sql` with `{JOB_COLUMNS}` filled in (statements kept in `.sql` files).
pub(crate) fn with_job_columns(sql: &str) -> String {
    sql.replace("{JOB_COLUMNS}", JOB_COLUMNS)
}

pub(crate) fn parse_status(status: &str) -> Result<JobStatus, StoreError> {
    status
        .parse()
        .map_err(|error| StoreError::Corrupt(format!("{error}")))
}

/// Reads the [`JOB_COLUMNS`] of a row.
pub(crate) fn job_from_row(row: &Row) -> Result<SourceConnectionJob, StoreError> {
    let started_at = row.try_get("job_started_at")?;
    let completed_at = row.try_get("job_completed_at")?;
    Ok(SourceConnectionJob {
        id: row.try_get("job_id")?,
        source_connection_id: row.try_get("job_source_connection_id")?,
        status: parse_status(row.try_get("job_status")?)?,
        started_at,
        completed_at,
        duration_seconds: SourceConnectionJob::duration(started_at, completed_at),
        entities_inserted: row.try_get("job_entities_inserted")?,
        entities_updated: row.try_get("job_entities_updated")?,
        entities_deleted: row.try_get("job_entities_deleted")?,
        entities_failed: row.try_get("job_entities_failed")?,
        error: row.try_get("job_error")?,
        error_category: row.try_get("job_error_category")?,
        error_details: row.try_get("job_error_details")?,
        trigger: row
            .try_get::<_, &str>("job_trigger")?
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("job trigger: {error}")))?,
        scheduled_for: row.try_get("job_scheduled_for")?,
        waiting_reason: row
            .try_get::<_, Option<&str>>("job_waiting_reason")?
            .and_then(syncway_model::WaitingReason::from_code)
            .map(Box::new),
    })
}

/// A batched statement answers one row per input, in order; anything else
/// is a bug, reported rather than mismatched.
pub(crate) fn expect_rows(rows: &[Row], expected: usize, what: &str) -> Result<(), StoreError> {
    if rows.len() == expected {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "{what} of {expected} returned {} rows",
        rows.len()
    )))
}
