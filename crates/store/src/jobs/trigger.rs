//! Triggers: a pending job and its outbox message in one statement.

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use syncway_model::{JobMessage, SourceConnectionJob};
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::{expect_rows, job_from_row, with_job_columns};

static TRIGGER: LazyLock<String> =
    LazyLock::new(|| with_trigger_rule(&with_job_columns(include_str!("trigger.sql"))));
static TRIGGER_MANY: LazyLock<String> =
    LazyLock::new(|| with_trigger_rule(&with_job_columns(include_str!("trigger_many.sql"))));

/// `sql` with the trigger rule (`new_jobs.sql`) in place of `{NEW_JOBS}`:
/// every statement that makes jobs makes them by the same rule.
pub(crate) fn with_trigger_rule(sql: &str) -> String {
    sql.replace("{NEW_JOBS}", include_str!("new_jobs.sql"))
}

/// What a trigger came to. The API answers these 200, 401, 404, 409 and
/// 409 (routes/jobs.rs); trigger_many.sql records the same statuses in the
/// audit log, and tests/it/audit_log.rs holds the two to each other.
#[derive(Debug)]
pub enum Triggered {
    Created(Box<SourceConnectionJob>),
    /// The API key is unknown, revoked or expired ([`trigger_many`] only).
    KeyInvalid,
    ConnectionMissing,
    NeedsReauth,
    /// The connection already has a pending, running or cancelling job.
    AlreadyActive,
}

/// What a statement's row says about one trigger, once authenticated.
fn triggered(row: &tokio_postgres::Row) -> Result<Triggered, StoreError> {
    if row.try_get::<_, bool>("needs_reauth")? {
        return Ok(Triggered::NeedsReauth);
    }
    if row.try_get::<_, Option<Uuid>>("job_id")?.is_none() {
        return Ok(Triggered::AlreadyActive);
    }
    Ok(Triggered::Created(Box::new(job_from_row(row)?)))
}

/// Creates a pending job and its outbox message in one statement (hence one
/// transaction). The database decides [`Triggered::AlreadyActive`] through
/// the unique index `one_active_job_per_connection` (`ON CONFLICT`).
pub async fn trigger(
    client: &impl GenericClient,
    organization_id: Uuid,
    source_connection_id: Uuid,
    force_full_sync: bool,
) -> Result<Triggered, StoreError> {
    let job_id = Uuid::now_v7();
    let message = JobMessage::new(job_id, source_connection_id).encode();
    let statement = client.prepare_cached(&TRIGGER).await?;
    let row = client
        .query_opt(
            &statement,
            &[
                &source_connection_id,
                &organization_id,
                &job_id,
                &force_full_sync,
                &message,
            ],
        )
        .await?;
    match row {
        None => Ok(Triggered::ConnectionMissing),
        Some(row) => triggered(&row),
    }
}

/// One trigger of a [`trigger_many`] batch, authenticated by its key's
/// digest ([`crate::api_keys::digest`]).
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub key_digest: Vec<u8>,
    pub source_connection_id: Uuid,
    pub force_full_sync: bool,
    /// This run may delete more than the mass-deletion guard allows.
    pub allow_mass_deletion: bool,
    /// The request's id and client address, for the audit log.
    pub request_id: Option<String>,
    pub client_address: Option<String>,
}

/// Authenticates and runs many triggers in ONE statement: for each request
/// what [`trigger`] would do after [`crate::api_keys::find_organization`].
/// Each job commits with its outbox row as before; the batch shares the
/// round trip and the commit. Two requests of a batch for one connection
/// behave as two concurrent triggers: one is created, the other is
/// [`Triggered::AlreadyActive`]. Results come in request order.
pub async fn trigger_many(
    client: &impl GenericClient,
    requests: &[TriggerRequest],
) -> Result<Vec<Triggered>, StoreError> {
    let positions: Vec<i32> = (0..requests.len())
        .filter_map(|n| i32::try_from(n).ok())
        .collect();
    let digests: Vec<&[u8]> = requests.iter().map(|r| r.key_digest.as_slice()).collect();
    let connections: Vec<Uuid> = requests.iter().map(|r| r.source_connection_id).collect();
    let job_ids: Vec<Uuid> = requests.iter().map(|_| Uuid::now_v7()).collect();
    let forces: Vec<bool> = requests.iter().map(|r| r.force_full_sync).collect();
    let allowances: Vec<bool> = requests.iter().map(|r| r.allow_mass_deletion).collect();
    let messages: Vec<Vec<u8>> = requests
        .iter()
        .zip(&job_ids)
        .map(|(r, job_id)| JobMessage::new(*job_id, r.source_connection_id).encode())
        .collect();
    let request_ids: Vec<Option<&str>> = requests.iter().map(|r| r.request_id.as_deref()).collect();
    let addresses: Vec<Option<&str>> = requests
        .iter()
        .map(|r| r.client_address.as_deref())
        .collect();
    let statement = client.prepare_cached(&TRIGGER_MANY).await?;
    let rows = client
        .query(
            &statement,
            &[
                &positions,
                &digests,
                &connections,
                &job_ids,
                &forces,
                &messages,
                &allowances,
                &request_ids,
                &addresses,
            ],
        )
        .await?;
    expect_rows(&rows, requests.len(), "a batch of triggers")?;
    rows.iter()
        .map(|row| {
            if !row.try_get::<_, bool>("authenticated")? {
                Ok(Triggered::KeyInvalid)
            } else if !row.try_get::<_, bool>("connection_found")? {
                Ok(Triggered::ConnectionMissing)
            } else {
                triggered(row)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_statement_that_makes_jobs_splices_the_trigger_rule_once() {
        for sql in [
            super::TRIGGER.as_str(),
            super::TRIGGER_MANY.as_str(),
            &super::with_trigger_rule(include_str!("../schedules/fire.sql")),
        ] {
            assert_eq!(sql.matches("new_jobs AS (").count(), 1, "{sql}");
            assert_eq!(sql.matches("INSERT INTO sync_jobs").count(), 1, "{sql}");
            assert!(!sql.contains('{'), "{sql}");
        }
    }
}
