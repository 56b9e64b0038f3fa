//! Claims: a worker takes a job (phase `pending`, `expired` or
//! `handed_back`, see [`super::phase`]), attempt + 1, with a lease.

use deadpool_postgres::GenericClient;
use syncway_model::JobStatus;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::{expect_rows, parse_status};

const CLAIM: &str = include_str!("claim.sql");
const ORG_LOCKS: &str = include_str!("org_locks.sql");

/// What a worker needs to run a connection's sync.
#[derive(Debug, Clone)]
pub struct SyncSource {
    pub short_name: String,
    pub config: serde_json::Value,
    pub continuous: bool,
    pub credentials: Option<Vec<u8>>,
    pub cursor: Option<serde_json::Value>,
    /// `schedule.cursor_field`.
    pub cursor_field: Option<String>,
    /// Entities stored for the connection when the job was claimed.
    pub stored_entities: i64,
}

/// A job this worker now owns, with what it needs to run it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub source_connection_id: Uuid,
    /// `running`, or `cancelling` when a cancel came while nobody held it.
    pub status: JobStatus,
    pub force_full_sync: bool,
    pub attempt: i32,
    /// When the job first started (its first claim).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// This claim's token: the fence of every write its run makes, and the
    /// run id of a full sync's seen sets.
    pub lease: Uuid,
    /// The connection's organization (whose share the job counts in).
    pub organization_id: Uuid,
    pub source: SyncSource,
}

/// What a claim came to: named for what it is, so that the log says which.
#[derive(Debug)]
pub enum Claim {
    Claimed(Box<ClaimedJob>),
    /// The job (or its connection) no longer exists.
    Missing,
    /// The job already ended.
    Finished(JobStatus),
    /// Another claim holds it (its lease is live): another worker's, or an
    /// earlier delivery's of the same batch.
    Held,
    /// It waits out a retry's backoff (its delay-queue message comes back).
    RetryWait,
    /// Claimable, but another transaction holds its row (a frozen or
    /// cut-off worker's, until its session ends): the claim did not wait.
    Locked,
    /// Its deployment or organization is paused, or its organization or
    /// source type already runs as many jobs as allowed
    /// ([`claim_many_limited`]): the job is held (V14, V20) until a release
    /// lets it go; its message is done with.
    Throttled,
}

/// Takes one job; see [`claim_many`].
pub async fn claim(
    client: &impl GenericClient,
    job_id: Uuid,
    owner: &str,
    lease_seconds: f64,
) -> Result<Claim, StoreError> {
    claim_many(client, &[job_id], owner, lease_seconds)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a claim returned no result".into()))
}

/// Claims many jobs in ONE statement; results come in the order of
/// `job_ids`. An id given twice is claimed once: its second place answers
/// [`Claim::Held`] (this worker holds it).
pub async fn claim_many(
    client: &impl GenericClient,
    job_ids: &[Uuid],
    owner: &str,
    lease_seconds: f64,
) -> Result<Vec<Claim>, StoreError> {
    let statement = client.prepare_cached(CLAIM).await?;
    let unlimited: Option<i32> = None;
    let (names, caps): (Vec<&str>, Vec<i32>) = (Vec::new(), Vec::new());
    let rows = client
        .query(
            &statement,
            &[&job_ids, &owner, &lease_seconds, &unlimited, &names, &caps],
        )
        .await?;
    claims_from_rows(&rows, job_ids)
}

/// What limits a claim: the fair share between organizations and the caps
/// per source type (`limits.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimLimits {
    pub max_per_org: Option<i32>,
    /// `(short_name, cap)`.
    pub source_type_caps: Vec<(String, i32)>,
}

impl ClaimLimits {
    pub fn is_unlimited(&self) -> bool {
        self.max_per_org.is_none() && self.source_type_caps.is_empty()
    }
}

/// [`claim_many`] under limits: no organization holds more than
/// `max_per_org` leased jobs at once, no source type more than its cap. A
/// job that would exceed one is held in Postgres (`held_since`, with the
/// reason), answered [`Claim::Throttled`], and waits there without costing
/// a claim or a message until a release lets it go ([`release_held`],
/// [`super::release_source_type`]). Claims for one organization, and for
/// one capped source type, are serialized by advisory locks, taken in a
/// statement of their own so that the counts, in the next statement's
/// snapshot, see every claim that committed before.
pub async fn claim_many_limited(
    client: &mut deadpool_postgres::Object,
    job_ids: &[Uuid],
    owner: &str,
    lease_seconds: f64,
    limits: &ClaimLimits,
) -> Result<Vec<Claim>, StoreError> {
    let transaction = client.transaction().await?;
    let names: Vec<&str> = limits
        .source_type_caps
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let caps: Vec<i32> = limits
        .source_type_caps
        .iter()
        .map(|(_, cap)| *cap)
        .collect();
    let locks = transaction.prepare_cached(ORG_LOCKS).await?;
    let fair = limits.max_per_org.is_some();
    transaction
        .query(&locks, &[&job_ids, &fair, &names])
        .await?;
    let statement = transaction.prepare_cached(CLAIM).await?;
    let rows = transaction
        .query(
            &statement,
            &[
                &job_ids,
                &owner,
                &lease_seconds,
                &limits.max_per_org,
                &names,
                &caps,
            ],
        )
        .await?;
    let claims = claims_from_rows(&rows, job_ids)?;
    transaction.commit().await?;
    Ok(claims)
}

/// Reads the claim statement's rows, one per input id.
fn claims_from_rows(rows: &[Row], job_ids: &[Uuid]) -> Result<Vec<Claim>, StoreError> {
    expect_rows(rows, job_ids.len(), "a claim")?;
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get("input_id")?;
            if !seen.insert(id) {
                return Ok(Claim::Held);
            }
            claim_from_row(id, row)
        })
        .collect()
}

fn claim_from_row(id: Uuid, row: &Row) -> Result<Claim, StoreError> {
    let claimed: Option<&str> = row.try_get("claimed_status")?;
    if let Some(status) = claimed {
        if !row.try_get::<_, bool>("connection_exists")? {
            // Claimed, but its connection was deleted meanwhile (and the
            // job with it, once that delete commits).
            return Ok(Claim::Missing);
        }
        return Ok(Claim::Claimed(Box::new(ClaimedJob {
            id,
            source_connection_id: row.try_get("source_connection_id")?,
            status: parse_status(status)?,
            force_full_sync: row.try_get("force_full_sync")?,
            attempt: row.try_get("attempt")?,
            started_at: row.try_get("started_at")?,
            lease: row.try_get("lease_token")?,
            organization_id: row.try_get("organization_id")?,
            source: SyncSource {
                short_name: row.try_get("short_name")?,
                config: row.try_get("config")?,
                continuous: row.try_get("continuous")?,
                credentials: row.try_get("credentials")?,
                cursor: row.try_get("cursor_value")?,
                cursor_field: row.try_get("cursor_field")?,
                stored_entities: row
                    .try_get::<_, Option<i64>>("stored_entities")?
                    .unwrap_or(0),
            },
        })));
    }
    if row.try_get::<_, bool>("held_back")? {
        return Ok(Claim::Throttled);
    }
    Ok(match row.try_get::<_, Option<&str>>("status_before")? {
        None => Claim::Missing,
        Some(status) => {
            let status = parse_status(status)?;
            let phase = row.try_get::<_, Option<&str>>("phase_before")?;
            if status.is_terminal() {
                Claim::Finished(status)
            } else if phase == Some("retry_wait") {
                Claim::RetryWait
            } else if matches!(phase, Some("pending" | "expired" | "handed_back"))
                && row.try_get::<_, bool>("skipped")?
            {
                Claim::Locked
            } else {
                Claim::Held
            }
        }
    })
}
