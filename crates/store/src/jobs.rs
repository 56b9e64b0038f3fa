//! Sync jobs: trigger, read, cancel (API side); claim, heartbeat, record
//! progress and finish (worker side). Every worker write is fenced by the
//! lease: it matches only while the worker still owns the job.

use bytes::BytesMut;
use deadpool_postgres::GenericClient;
use syncway_model::{ContentHash, JobMessage, JobStatus, SourceConnectionJob};
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use uuid::Uuid;

use crate::StoreError;
use crate::connections::SyncSource;

/// The columns [`job_from_row`] reads, for a `sync_jobs` row aliased `j`.
pub(crate) const JOB_COLUMNS: &str = "j.id, j.source_connection_id, j.status, j.started_at,
    j.completed_at, j.entities_inserted, j.entities_updated, j.entities_deleted,
    j.entities_failed, j.error, j.error_category, j.error_details";

fn parse_status(status: &str) -> Result<JobStatus, StoreError> {
    status
        .parse()
        .map_err(|error| StoreError::Corrupt(format!("{error}")))
}

/// Reads the [`JOB_COLUMNS`] starting at column `at`.
pub(crate) fn job_from_row(row: &Row, at: usize) -> Result<SourceConnectionJob, StoreError> {
    let started_at = row.get(at + 3);
    let completed_at = row.get(at + 4);
    Ok(SourceConnectionJob {
        id: row.get(at),
        source_connection_id: row.get(at + 1),
        status: parse_status(row.get(at + 2))?,
        started_at,
        completed_at,
        duration_seconds: SourceConnectionJob::duration(started_at, completed_at),
        entities_inserted: row.get(at + 5),
        entities_updated: row.get(at + 6),
        entities_deleted: row.get(at + 7),
        entities_failed: row.get(at + 8),
        error: row.get(at + 9),
        error_category: row.get(at + 10),
        error_details: row.get(at + 11),
    })
}

/// What a trigger came to.
#[derive(Debug)]
pub enum Triggered {
    Created(SourceConnectionJob),
    /// The API key is unknown, revoked or expired ([`trigger_many`] only).
    KeyInvalid,
    ConnectionMissing,
    NeedsReauth,
    /// The connection already has a pending, running or cancelling job.
    AlreadyActive,
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
    let statement = client
        .prepare_cached(&format!(
            "WITH conn AS (
                 SELECT id, needs_reauth FROM source_connections
                 WHERE id = $1 AND organization_id = $2
             ), j AS (
                 INSERT INTO sync_jobs (id, source_connection_id, force_full_sync)
                 SELECT $3, id, $4 FROM conn WHERE NOT needs_reauth
                 ON CONFLICT (source_connection_id) WHERE active DO NOTHING
                 RETURNING *
             ), queued AS (
                 INSERT INTO outbox (job_id, payload) SELECT id, $5 FROM j
             )
             SELECT conn.needs_reauth, {JOB_COLUMNS} FROM conn LEFT JOIN j ON true"
        ))
        .await?;
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
    let Some(row) = row else {
        return Ok(Triggered::ConnectionMissing);
    };
    if row.get::<_, bool>(0) {
        return Ok(Triggered::NeedsReauth);
    }
    if row.get::<_, Option<Uuid>>(1).is_none() {
        return Ok(Triggered::AlreadyActive);
    }
    Ok(Triggered::Created(job_from_row(&row, 1)?))
}

/// One trigger of a [`trigger_many`] batch, authenticated by its key's
/// digest ([`crate::api_keys::digest`]).
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub key_digest: Vec<u8>,
    pub source_connection_id: Uuid,
    pub force_full_sync: bool,
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
    let messages: Vec<Vec<u8>> = requests
        .iter()
        .zip(&job_ids)
        .map(|(r, job_id)| JobMessage::new(*job_id, r.source_connection_id).encode())
        .collect();
    let statement = client
        .prepare_cached(&format!(
            "WITH req AS (
                 SELECT * FROM unnest($1::int[], $2::bytea[], $3::uuid[], $4::uuid[],
                                      $5::bool[], $6::bytea[])
                     AS r(n, key_hash, connection_id, job_id, force_full_sync, payload)
             ), auth AS (
                 SELECT r.n, k.organization_id FROM req r
                 JOIN api_keys k ON k.key_hash = r.key_hash
                 WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
             ), conn AS (
                 SELECT r.n, s.id, s.needs_reauth FROM req r
                 JOIN auth a ON a.n = r.n
                 JOIN source_connections s
                     ON s.id = r.connection_id AND s.organization_id = a.organization_id
             ), j AS (
                 INSERT INTO sync_jobs (id, source_connection_id, force_full_sync)
                 SELECT r.job_id, c.id, r.force_full_sync FROM req r
                 JOIN conn c ON c.n = r.n
                 WHERE NOT c.needs_reauth
                 -- A fixed order, so that two batches wanting the same
                 -- connections wait for each other instead of deadlocking.
                 ORDER BY r.connection_id, r.n
                 ON CONFLICT (source_connection_id) WHERE active DO NOTHING
                 RETURNING *
             ), queued AS (
                 INSERT INTO outbox (job_id, payload)
                 SELECT j.id, r.payload FROM j JOIN req r ON r.job_id = j.id ORDER BY r.n
             )
             SELECT r.n, a.n IS NOT NULL, c.n IS NOT NULL, COALESCE(c.needs_reauth, false),
                    {JOB_COLUMNS}
             FROM req r
             LEFT JOIN auth a ON a.n = r.n
             LEFT JOIN conn c ON c.n = r.n
             LEFT JOIN j ON j.id = r.job_id
             ORDER BY r.n"
        ))
        .await?;
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
            ],
        )
        .await?;
    expect_rows(&rows, requests.len(), "a batch of triggers")?;
    rows.iter()
        .map(|row| {
            Ok(if !row.get::<_, bool>(1) {
                Triggered::KeyInvalid
            } else if !row.get::<_, bool>(2) {
                Triggered::ConnectionMissing
            } else if row.get::<_, bool>(3) {
                Triggered::NeedsReauth
            } else if row.get::<_, Option<Uuid>>(4).is_none() {
                Triggered::AlreadyActive
            } else {
                Triggered::Created(job_from_row(row, 4)?)
            })
        })
        .collect()
}

/// A job of the organization's connection.
pub async fn find(
    client: &impl GenericClient,
    organization_id: Uuid,
    source_connection_id: Uuid,
    job_id: Uuid,
) -> Result<Option<SourceConnectionJob>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM sync_jobs j
             JOIN source_connections s ON s.id = j.source_connection_id
             WHERE j.id = $1 AND j.source_connection_id = $2 AND s.organization_id = $3"
        ))
        .await?;
    let row = client
        .query_opt(
            &statement,
            &[&job_id, &source_connection_id, &organization_id],
        )
        .await?;
    row.map(|row| job_from_row(&row, 0)).transpose()
}

/// A connection's jobs, newest first. The caller checks the connection.
pub async fn list(
    client: &impl GenericClient,
    source_connection_id: Uuid,
    limit: i64,
) -> Result<Vec<SourceConnectionJob>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM sync_jobs j WHERE j.source_connection_id = $1
             ORDER BY j.created_at DESC, j.id DESC LIMIT $2"
        ))
        .await?;
    let rows = client
        .query(&statement, &[&source_connection_id, &limit])
        .await?;
    rows.iter().map(|row| job_from_row(row, 0)).collect()
}

/// What a cancel request came to.
#[derive(Debug)]
pub enum Cancelled {
    /// `cancelled` when no worker held it (pending, or waiting to retry),
    /// `cancelling` when one runs it.
    Done(SourceConnectionJob),
    NotFound,
    /// The job was already terminal or cancelling; nothing changed.
    Refused(JobStatus),
}

pub async fn cancel(
    client: &impl GenericClient,
    organization_id: Uuid,
    source_connection_id: Uuid,
    job_id: Uuid,
) -> Result<Cancelled, StoreError> {
    // A running job's worker is told through the control exchange; the
    // message goes through the outbox, in the same transaction.
    let control = syncway_model::ControlMessage::cancel(job_id).encode();
    let row = client
        .query_opt(
            &format!(
                // A job no worker holds (pending, or running but waiting out
                // a retry backoff or handed back) ends at once: nobody must
                // be told, and what it committed is consistent. A claim
                // racing this waits for the row, then finds it ended.
                "WITH j AS (UPDATE sync_jobs j SET
                     status = CASE WHEN j.lease_owner IS NULL THEN 'cancelled' ELSE 'cancelling' END,
                     completed_at = CASE WHEN j.lease_owner IS NULL THEN now() END,
                     lease_expires_at = CASE WHEN j.lease_owner IS NULL THEN NULL
                         ELSE j.lease_expires_at END,
                     retry_at = NULL,
                     modified_at = now()
                 FROM source_connections s
                 WHERE j.id = $1 AND j.source_connection_id = $2
                   AND s.id = j.source_connection_id AND s.organization_id = $3
                   AND j.status IN ('pending', 'running')
                 RETURNING j.*
             ), control AS (
                 INSERT INTO outbox (job_id, payload, kind)
                 SELECT id, $4, 'control' FROM j WHERE status = 'cancelling'
             )
             SELECT {JOB_COLUMNS} FROM j"
            ),
            &[&job_id, &source_connection_id, &organization_id, &control],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Cancelled::Done(job_from_row(&row, 0)?));
    }
    Ok(
        match find(client, organization_id, source_connection_id, job_id).await? {
            Some(job) => Cancelled::Refused(job.status),
            None => Cancelled::NotFound,
        },
    )
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
    pub source: SyncSource,
}

/// What a claim came to.
#[derive(Debug)]
pub enum Claim {
    Claimed(ClaimedJob),
    /// The job (or its connection) no longer exists.
    Missing,
    /// The job already ended.
    Finished(JobStatus),
    /// Another worker holds a live lease on it.
    Leased,
    /// Its organization already runs as many jobs as the fair share allows
    /// ([`claim_many_fairly`]); nothing changed but `requeued_at`.
    Throttled {
        source_connection_id: Uuid,
    },
}

/// Takes the job: pending -> running, or over from a worker whose lease
/// expired (attempt + 1). Every other case leaves the row untouched.
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

/// [`claim`] for many jobs in ONE statement; results come in the order of
/// `job_ids`. An id given twice is claimed once: its second place answers
/// [`Claim::Leased`] (this worker holds it).
pub async fn claim_many(
    client: &impl GenericClient,
    job_ids: &[Uuid],
    owner: &str,
    lease_seconds: f64,
) -> Result<Vec<Claim>, StoreError> {
    let statement = client.prepare_cached(&claim_sql(false)).await?;
    let rows = client
        .query(&statement, &[&job_ids, &owner, &lease_seconds])
        .await?;
    claims_from_rows(&rows, job_ids)
}

/// [`claim_many`] under a fair share: no organization holds more than
/// `max_per_org` running jobs (live leases) at once. A job that would
/// exceed it is left as it is, answered [`Claim::Throttled`], and its
/// `requeued_at` set (the caller enqueues it again after a short delay, so
/// the reaper need not). Claims for one organization are serialized by an
/// advisory lock per organization, taken in a statement of its own so that
/// the count, in the next statement's snapshot, sees every claim that
/// committed before.
pub async fn claim_many_fairly(
    client: &mut deadpool_postgres::Object,
    job_ids: &[Uuid],
    owner: &str,
    lease_seconds: f64,
    max_per_org: i32,
) -> Result<Vec<Claim>, StoreError> {
    let transaction = client.transaction().await?;
    // Locks in organization order: two batches cannot deadlock.
    let locks = transaction
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(1937, hashtext(org::text)) FROM (
                 SELECT DISTINCT s.organization_id AS org FROM sync_jobs j
                 JOIN source_connections s ON s.id = j.source_connection_id
                 WHERE j.id = ANY($1) ORDER BY 1) o",
        )
        .await?;
    transaction.query(&locks, &[&job_ids]).await?;
    let statement = transaction.prepare_cached(&claim_sql(true)).await?;
    let rows = transaction
        .query(
            &statement,
            &[&job_ids, &owner, &lease_seconds, &max_per_org],
        )
        .await?;
    let claims = claims_from_rows(&rows, job_ids)?;
    transaction.commit().await?;
    Ok(claims)
}

/// The claim statement; `fair` adds the per-organization limit (`$4`).
fn claim_sql(fair: bool) -> String {
    // Which jobs a claim may take: pending, or running/cancelling with no
    // live lease. A job waiting out a retry backoff is not taken early (a
    // second of slack for clocks: the delay queue's timer is the broker's).
    let claimable = "(status = 'pending'
                     OR (status IN ('running', 'cancelling')
                         AND (lease_owner IS NULL OR lease_expires_at < now())
                         AND (retry_at IS NULL OR retry_at <= now() + interval '1 second')))";
    let (fair_ctes, admitted, throttled) = if fair {
        (
            format!(
                "candidates AS (
                     SELECT j.id, s.organization_id AS org, i.n FROM input i
                     JOIN sync_jobs j ON j.id = i.id
                     JOIN source_connections s ON s.id = j.source_connection_id
                     WHERE {claimable}
                 ), busy AS (
                     -- Running jobs with a live lease, per organization.
                     SELECT s.organization_id AS org, count(*) AS running FROM sync_jobs j
                     JOIN source_connections s ON s.id = j.source_connection_id
                     WHERE j.active AND j.status IN ('running', 'cancelling')
                       AND j.lease_owner IS NOT NULL AND j.lease_expires_at >= now()
                       AND s.organization_id IN (SELECT org FROM candidates)
                     GROUP BY 1
                 ), ranked AS (
                     SELECT c.id, c.org, row_number() OVER (PARTITION BY c.org ORDER BY c.n) AS rank
                     FROM candidates c
                 ), admitted AS (
                     SELECT r.id FROM ranked r LEFT JOIN busy b ON b.org = r.org
                     WHERE r.rank + COALESCE(b.running, 0) <= $4::int
                 ), held_back AS (
                     UPDATE sync_jobs SET requeued_at = now()
                     WHERE id IN (SELECT id FROM candidates EXCEPT SELECT id FROM admitted)
                     RETURNING id
                 ), "
            ),
            "AND id IN (SELECT id FROM admitted)",
            "h.id IS NOT NULL",
        )
    } else {
        (String::new(), "", "false")
    };
    let held_back_join = if fair {
        "LEFT JOIN held_back h ON h.id = i.id"
    } else {
        ""
    };
    // The outer SELECT reads the rows as they were before the UPDATE (one
    // snapshot): for a job not claimed, that is why it was not.
    format!(
        "WITH input AS (
             SELECT * FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, n)
         ), {fair_ctes}claimed AS (
             UPDATE sync_jobs SET
                 status = CASE WHEN status = 'cancelling' THEN 'cancelling' ELSE 'running' END,
                 started_at = COALESCE(started_at, now()),
                 attempt = attempt + 1,
                 lease_owner = $2,
                 lease_expires_at = now() + make_interval(secs => $3),
                 retry_at = NULL,
                 modified_at = now()
             WHERE id = ANY($1) AND {claimable} {admitted}
             RETURNING id, source_connection_id, status, force_full_sync, attempt, started_at
         )
         SELECT i.id, c.source_connection_id, c.status, c.force_full_sync, c.attempt,
                s.short_name, s.config, s.continuous, s.credentials, cur.value,
                s.id IS NOT NULL, before.status, s.cursor_field, c.started_at,
                {throttled} AS throttled, before.source_connection_id
         FROM input i
         LEFT JOIN claimed c ON c.id = i.id
         LEFT JOIN source_connections s ON s.id = c.source_connection_id
         LEFT JOIN cursors cur ON cur.source_connection_id = c.source_connection_id
         LEFT JOIN sync_jobs before ON before.id = i.id AND c.id IS NULL
         {held_back_join}
         ORDER BY i.n"
    )
}

/// Reads a claim statement's rows, one per input id.
fn claims_from_rows(rows: &[Row], job_ids: &[Uuid]) -> Result<Vec<Claim>, StoreError> {
    expect_rows(rows, job_ids.len(), "a claim")?;
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    rows.iter()
        .map(|row| {
            let id: Uuid = row.get(0);
            if !seen.insert(id) {
                return Ok(Claim::Leased);
            }
            let claimed: Option<&str> = row.get(2);
            Ok(match claimed {
                Some(status) if row.get::<_, bool>(10) => Claim::Claimed(ClaimedJob {
                    id,
                    source_connection_id: row.get(1),
                    status: parse_status(status)?,
                    force_full_sync: row.get(3),
                    attempt: row.get(4),
                    started_at: row.get(13),
                    source: SyncSource {
                        short_name: row.get(5),
                        config: row.get(6),
                        continuous: row.get(7),
                        credentials: row.get(8),
                        cursor: row.get(9),
                        cursor_field: row.get(12),
                    },
                }),
                // Claimed, but its connection was deleted meanwhile (and
                // the job with it, once that delete commits).
                Some(_) => Claim::Missing,
                None if row.get::<_, bool>(14) => Claim::Throttled {
                    source_connection_id: row.get(15),
                },
                None => match row.get::<_, Option<&str>>(11) {
                    None => Claim::Missing,
                    Some(status) => {
                        let status = parse_status(status)?;
                        if status.is_terminal() {
                            Claim::Finished(status)
                        } else {
                            Claim::Leased
                        }
                    }
                },
            })
        })
        .collect()
}

/// Extends the lease. Returns the job's status, or `None` when this worker
/// no longer owns the job (it must stop writing).
pub async fn heartbeat(
    client: &impl GenericClient,
    job_id: Uuid,
    owner: &str,
    lease_seconds: f64,
) -> Result<Option<JobStatus>, StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE sync_jobs SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND lease_owner = $2 AND status IN ('running', 'cancelling')
             RETURNING status",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&job_id, &owner, &lease_seconds])
        .await?;
    row.map(|row| parse_status(row.get(0))).transpose()
}

/// Gives the job up without ending it (shutdown): the lease is released so
/// that the next claim takes the job over at once and resumes from what was
/// committed. A handback is not a failed attempt, so the attempt that the
/// takeover adds is taken back here. Returns false when this worker did not
/// own it any more.
pub async fn release(
    client: &impl GenericClient,
    job_id: Uuid,
    owner: &str,
) -> Result<bool, StoreError> {
    let released = client
        .execute(
            "UPDATE sync_jobs SET lease_owner = NULL, lease_expires_at = now(),
                 attempt = greatest(attempt - 1, 0), modified_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status IN ('running', 'cancelling')",
            &[&job_id, &owner],
        )
        .await?;
    Ok(released == 1)
}

/// A transient failure with attempts left: the job stays `running` with no
/// lease owner, is not claimed before `delay` has passed, and its message
/// goes (through the outbox, in the same transaction) to a delay queue that
/// hands it back to the jobs queue after `delay`. `error` and `details` say
/// what failed and when the next attempt is due. Returns false when this
/// worker no longer owns the job (nothing was written).
pub async fn schedule_retry(
    client: &impl GenericClient,
    job: &JobMessage,
    owner: &str,
    delay: std::time::Duration,
    error: &str,
    details: &serde_json::Value,
) -> Result<bool, StoreError> {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "WITH j AS (
                 UPDATE sync_jobs SET
                     lease_owner = NULL,
                     retry_at = now() + make_interval(secs => ($3::bigint / 1000.0)::float8),
                     -- The reaper counts from here if the message is lost.
                     lease_expires_at = now() + make_interval(secs => ($3::bigint / 1000.0)::float8),
                     error = $4, error_details = $5, modified_at = now()
                 WHERE id = $1 AND lease_owner = $2 AND status = 'running'
                 RETURNING id
             )
             INSERT INTO outbox (job_id, payload, kind, delay_ms)
             SELECT id, $6, 'job', $3 FROM j
             RETURNING job_id",
            &[
                &job.job_id,
                &owner,
                &delay_ms,
                &error,
                details,
                &job.encode(),
            ],
        )
        .await?;
    Ok(rows.len() == 1)
}

/// Fails a job whose message the broker refused (the relay set it aside),
/// unless it already ended. Returns whether it did.
pub async fn fail_unpublishable(
    client: &impl GenericClient,
    job_id: Uuid,
    reason: &str,
) -> Result<bool, StoreError> {
    let failed = client
        .execute(
            "UPDATE sync_jobs SET status = 'failed', completed_at = now(),
                 lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL,
                 error = $2, error_details = jsonb_build_object('kind', 'unpublishable'),
                 modified_at = now()
             WHERE id = $1 AND active",
            &[&job_id, &reason],
        )
        .await?;
    Ok(failed == 1)
}

/// Whether the job was deleted with its connection (within the last week).
pub async fn was_deleted(client: &impl GenericClient, job_id: Uuid) -> Result<bool, StoreError> {
    let row = client
        .query_opt("SELECT 1 FROM deleted_jobs WHERE job_id = $1", &[&job_id])
        .await?;
    Ok(row.is_some())
}

/// A batched statement answers one row per input, in order; anything else
/// is a bug, reported rather than mismatched.
fn expect_rows(rows: &[Row], expected: usize, what: &str) -> Result<(), StoreError> {
    if rows.len() == expected {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "{what} of {expected} returned {} rows",
        rows.len()
    )))
}

/// What one pass of [`reap`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Jobs whose message was enqueued again.
    pub requeued: u64,
    /// Jobs ended `failed`: their attempts were used up.
    pub failed: u64,
    /// `cancelling` jobs whose worker died, ended `cancelled`.
    pub cancelled: u64,
}

/// The reaper: finds jobs that nobody is working on and nothing will
/// deliver, and moves each on, in one transaction (safe to run in every
/// worker at once: rows another reaper holds are skipped).
/// - `running`/`cancelling` with a lease expired more than `grace` ago: no
///   live worker has it, and a redelivered message would have claimed it by
///   now. A `cancelling` one ends `cancelled` (what it committed is
///   consistent); a `running` one that used `max_attempts` ends `failed`;
///   any other is re-enqueued and taken over by the next claim (attempt + 1).
/// - `pending` for longer than `requeue_after`: its message was lost (a
///   purged queue, say) or sits behind a long backlog; it is re-enqueued (a
///   duplicate is harmless: the claim runs a job once).
///
/// A job with a message still in the outbox is left alone, and a job is
/// re-enqueued at most once per `requeue_after`.
pub async fn reap(
    client: &mut deadpool_postgres::Object,
    grace: std::time::Duration,
    requeue_after: std::time::Duration,
    max_attempts: i32,
) -> Result<Reaped, StoreError> {
    let transaction = client.transaction().await?;
    let rows = transaction
        .query(
            "SELECT id, source_connection_id, status, attempt FROM sync_jobs j
             WHERE active
               AND ((status IN ('running', 'cancelling')
                     AND COALESCE(lease_expires_at, modified_at)
                         < now() - make_interval(secs => $1))
                    OR (status = 'pending'
                        AND created_at < now() - make_interval(secs => $2)))
               AND (requeued_at IS NULL OR requeued_at < now() - make_interval(secs => $2))
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id)
             ORDER BY created_at
             LIMIT 500
             FOR UPDATE SKIP LOCKED",
            &[&grace.as_secs_f64(), &requeue_after.as_secs_f64()],
        )
        .await?;
    let mut reaped = Reaped::default();
    let mut requeue_ids = Vec::new();
    let mut payloads = Vec::new();
    let mut cancel_ids = Vec::new();
    let mut fail_ids = Vec::new();
    for row in &rows {
        let id: Uuid = row.get(0);
        let status = parse_status(row.get(2))?;
        let attempt: i32 = row.get(3);
        match status {
            JobStatus::Cancelling => cancel_ids.push(id),
            JobStatus::Running if attempt >= max_attempts => fail_ids.push(id),
            _ => {
                requeue_ids.push(id);
                payloads.push(JobMessage::new(id, row.get(1)).encode());
            }
        }
    }
    if !cancel_ids.is_empty() {
        reaped.cancelled = transaction
            .execute(
                "UPDATE sync_jobs SET status = 'cancelled', completed_at = now(),
                     lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL,
                     modified_at = now()
                 WHERE id = ANY($1)",
                &[&cancel_ids],
            )
            .await?;
    }
    if !fail_ids.is_empty() {
        reaped.failed = transaction
            .execute(
                "UPDATE sync_jobs SET status = 'failed', completed_at = now(),
                     lease_owner = NULL, lease_expires_at = NULL, retry_at = NULL,
                     error = 'gave up after ' || attempt || ' attempts: the last one stopped \
                              without finishing (its worker died or lost the database)',
                     error_details = jsonb_build_object('kind', 'exhausted', 'attempts', attempt),
                     modified_at = now()
                 WHERE id = ANY($1)",
                &[&fail_ids],
            )
            .await?;
    }
    if !requeue_ids.is_empty() {
        transaction
            .execute(
                "UPDATE sync_jobs SET requeued_at = now(), retry_at = NULL WHERE id = ANY($1)",
                &[&requeue_ids],
            )
            .await?;
        reaped.requeued = crate::outbox::enqueue(&transaction, &requeue_ids, &payloads).await?;
    }
    transaction
        .execute(
            "DELETE FROM deleted_jobs WHERE deleted_at < now() - interval '7 days'",
            &[],
        )
        .await?;
    transaction.commit().await?;
    Ok(reaped)
}

/// Entity counts a batch adds to its job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub failed: i64,
}

/// How a job ends.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    pub error: Option<String>,
    pub error_category: Option<String>,
    pub error_details: Option<serde_json::Value>,
}

/// One entity to store.
#[derive(Debug, Clone)]
pub struct EntityWrite {
    pub entity_id: String,
    /// See [`syncway_model::content_hash`].
    pub content_hash: ContentHash,
    /// The payload's canonical JSON, which the hash covers. Kept as text:
    /// it goes to the database as it is, without a second serialization.
    pub payload: String,
}

impl EntityWrite {
    /// Serializes and hashes the payload. Fails only for a payload JSON
    /// cannot represent (serde_json's values always can).
    pub fn new(entity_id: String, payload: &serde_json::Value) -> serde_json::Result<Self> {
        let (payload, content_hash) = syncway_model::canonical_json(payload)?;
        Ok(EntityWrite {
            entity_id,
            content_hash,
            payload,
        })
    }
}

/// JSON text bound as a `json` (or `jsonb`) parameter as it is.
#[derive(Debug)]
struct JsonText<'a>(&'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary format: a version byte, then the text.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// A batch to commit: entities to upsert (ids unique), ids the source
/// reported deleted (disjoint from the entities), entities that failed, and
/// the cursor that covers it all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch<'a> {
    pub entities: &'a [EntityWrite],
    pub deleted: &'a [String],
    pub failed: i64,
    pub cursor: Option<&'a serde_json::Value>,
    /// Full syncs stamp unchanged entities with the job too, and when they
    /// complete, delete every entity of the connection without the stamp
    /// (what the source no longer has).
    pub full_sync: bool,
}

/// One job's share of a [`commit_many`].
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    pub job_id: Uuid,
    pub source_connection_id: Uuid,
    pub batch: Batch<'a>,
    /// With an outcome, the job ends in the same transaction.
    pub outcome: Option<&'a Outcome>,
}

/// Commits a batch in ONE statement (hence one transaction): counts its
/// entities by content hash against what is stored, upserts those that
/// changed, deletes what the batch (or a completing full sync) says is gone,
/// adds the counts to the job, stores the cursor, renews the lease and, with
/// `outcome`, ends the job and records a credential failure on the
/// connection. The job update is the fence: when this worker no longer owns
/// the job, nothing at all is written and `None` is returned.
pub async fn commit_batch(
    client: &impl GenericClient,
    job_id: Uuid,
    source_connection_id: Uuid,
    owner: &str,
    lease_seconds: f64,
    batch: &Batch<'_>,
    outcome: Option<&Outcome>,
) -> Result<Option<(JobStatus, Counts)>, StoreError> {
    let commit = Commit {
        job_id,
        source_connection_id,
        batch: *batch,
        outcome,
    };
    commit_many(client, owner, lease_seconds, &[commit])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a commit returned no result".into()))
}

/// [`commit_batch`] for the batches of several jobs (at most one commit per
/// job) in ONE statement and transaction; each job is fenced on its own and
/// results come in the order of `commits`.
pub async fn commit_many(
    client: &impl GenericClient,
    owner: &str,
    lease_seconds: f64,
    commits: &[Commit<'_>],
) -> Result<Vec<Option<(JobStatus, Counts)>>, StoreError> {
    // Per job (n = its place in `commits`).
    let mut n = Vec::with_capacity(commits.len());
    let mut job_ids = Vec::with_capacity(commits.len());
    let mut connections = Vec::with_capacity(commits.len());
    let mut delete_unseen = Vec::with_capacity(commits.len());
    let mut failed = Vec::with_capacity(commits.len());
    let mut statuses: Vec<Option<&str>> = Vec::with_capacity(commits.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(commits.len());
    let mut categories: Vec<Option<&str>> = Vec::with_capacity(commits.len());
    let mut details: Vec<Option<&serde_json::Value>> = Vec::with_capacity(commits.len());
    let mut cursors: Vec<Option<&serde_json::Value>> = Vec::with_capacity(commits.len());
    let mut full_sync_jobs = Vec::new();
    // Per entity and per deleted id: the job's n.
    let mut entity_n = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    let mut hashes: Vec<&[u8]> = Vec::new();
    let mut payloads: Vec<JsonText<'_>> = Vec::new();
    let mut deleted_n = Vec::new();
    let mut deleted: Vec<&str> = Vec::new();
    for (at, commit) in commits.iter().enumerate() {
        let at = i32::try_from(at)
            .map_err(|_| StoreError::Corrupt("too many commits in one batch".into()))?;
        let batch = &commit.batch;
        let outcome = commit.outcome;
        n.push(at);
        job_ids.push(commit.job_id);
        connections.push(commit.source_connection_id);
        delete_unseen
            .push(batch.full_sync && outcome.is_some_and(|o| o.status == JobStatus::Completed));
        failed.push(batch.failed);
        statuses.push(outcome.map(|o| o.status.as_str()));
        errors.push(outcome.and_then(|o| o.error.as_deref()));
        categories.push(outcome.and_then(|o| o.error_category.as_deref()));
        details.push(outcome.and_then(|o| o.error_details.as_ref()));
        cursors.push(batch.cursor);
        if batch.full_sync {
            full_sync_jobs.push(commit.job_id);
        }
        for entity in batch.entities {
            entity_n.push(at);
            ids.push(&entity.entity_id);
            hashes.push(&entity.content_hash[..]);
            payloads.push(JsonText(&entity.payload));
        }
        for id in batch.deleted {
            deleted_n.push(at);
            deleted.push(id);
        }
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 19] = [
        &owner,
        &lease_seconds,
        &n,
        &job_ids,
        &connections,
        &delete_unseen,
        &failed,
        &statuses,
        &errors,
        &categories,
        &details,
        &cursors,
        &entity_n,
        &ids,
        &hashes,
        &payloads,
        &deleted_n,
        &deleted,
        &full_sync_jobs,
    ];
    // Small commits (the common case: many jobs of few entities) reuse the
    // connection's prepared statement and its cached plan. A large one is
    // parsed and planned afresh (an unnamed statement): within one large
    // sync the entity table grows from nothing to millions of rows, and a
    // plan cached while it was small would keep scanning all of it for
    // every batch (measured: 75 s instead of 5 s for 200,000 entities in
    // batches of 5,000). Planning costs little beside such a batch.
    let rows = if ids.len() + deleted.len() >= FRESH_PLAN_ENTITIES {
        client.query(COMMIT_MANY, &params).await?
    } else {
        let statement = client.prepare_cached(COMMIT_MANY).await?;
        client.query(&statement, &params).await?
    };

    expect_rows(&rows, commits.len(), "a commit")?;
    rows.iter()
        .zip(commits)
        .map(|(row, commit)| {
            let Some(status) = row.get::<_, Option<&str>>(1) else {
                return Ok(None);
            };
            let counts = Counts {
                inserted: row.get(2),
                updated: row.get(3),
                deleted: row.get(4),
                failed: commit.batch.failed,
            };
            Ok(Some((parse_status(status)?, counts)))
        })
        .collect()
}

/// Commits with at least this many entities are planned afresh (see
/// [`commit_many`]).
const FRESH_PLAN_ENTITIES: usize = 256;

/// The statement of [`commit_many`]. Statements in a WITH see one snapshot,
/// so every count is taken from the state before this statement, and no two
/// parts touch the same row: `up` writes the batches' ids, `gone` deletes
/// only other ids.
const COMMIT_MANY: &str = "WITH b AS (
                 SELECT * FROM unnest($3::int[], $4::uuid[], $5::uuid[], $6::bool[],
                                      $7::bigint[], $8::text[], $9::text[], $10::text[],
                                      $11::jsonb[], $12::jsonb[])
                     AS b(n, job_id, conn_id, delete_unseen, failed, status, error,
                          error_category, error_details, cursor)
             ), keys AS (
                 -- The batches' ids and hashes, without the payloads: this
                 -- is what the counting reads, and it stays small. n is the
                 -- batch's place in the arrays, so its connection is a
                 -- subscript, not a join.
                 SELECT k.n, ($5::uuid[])[k.n + 1] AS conn_id, k.entity_id, k.content_hash,
                        k.ord
                 FROM unnest($13::int[], $14::text[], $15::bytea[]) WITH ORDINALITY
                     AS k(n, entity_id, content_hash, ord)
             ), probe AS (
                 SELECT k.ord, k.n, k.content_hash, e.content_hash AS stored_hash
                 FROM keys k
                 -- One primary-key probe per key. (As a plain join, the
                 -- generic plan probed through a bitmap scan per key.)
                 LEFT JOIN LATERAL (
                     SELECT e.content_hash FROM entities e
                     WHERE e.source_connection_id = k.conn_id AND e.entity_id = k.entity_id
                     LIMIT 1
                 ) e ON true
             ), diff AS (
                 SELECT n,
                        count(*) FILTER (WHERE stored_hash IS NULL) AS inserted,
                        count(*) FILTER (WHERE stored_hash <> content_hash) AS updated
                 FROM probe
                 GROUP BY n
             ), stored AS (
                 -- Per entity, in array order: is it stored already? New
                 -- ones are inserted plainly, the rest upserted.
                 SELECT array_agg(stored_hash IS NOT NULL ORDER BY ord) AS known FROM probe
             ), doomed AS (
                 SELECT b.n, e.source_connection_id, e.entity_id
                 FROM unnest($17::int[], $18::text[]) AS d(n, entity_id)
                 JOIN b ON b.n = d.n
                 JOIN entities e
                     ON e.source_connection_id = b.conn_id AND e.entity_id = d.entity_id
                 UNION
                 SELECT b.n, e.source_connection_id, e.entity_id FROM b
                 JOIN entities e ON e.source_connection_id = b.conn_id
                 WHERE b.delete_unseen AND e.last_seen_job IS DISTINCT FROM b.job_id
                   AND NOT EXISTS (
                       SELECT 1 FROM keys k WHERE k.n = b.n AND k.entity_id = e.entity_id)
             ), tally AS (
                 SELECT b.*, COALESCE(d.inserted, 0) AS inserted, COALESCE(d.updated, 0) AS updated,
                        (SELECT count(*) FROM doomed x WHERE x.n = b.n) AS deleted
                 FROM b LEFT JOIN diff d ON d.n = b.n
             ), j AS (
                 UPDATE sync_jobs s SET
                     entities_inserted = s.entities_inserted + t.inserted,
                     entities_updated = s.entities_updated + t.updated,
                     entities_deleted = s.entities_deleted + t.deleted,
                     entities_failed = s.entities_failed + t.failed,
                     status = COALESCE(t.status, s.status),
                     completed_at = CASE WHEN t.status IS NOT NULL THEN now() END,
                     lease_owner = CASE WHEN t.status IS NULL THEN s.lease_owner END,
                     lease_expires_at = CASE WHEN t.status IS NULL
                         THEN now() + make_interval(secs => $2) END,
                     error = CASE WHEN t.status IS NULL THEN s.error ELSE t.error END,
                     error_category = CASE WHEN t.status IS NULL
                         THEN s.error_category ELSE t.error_category END,
                     error_details = CASE WHEN t.status IS NULL
                         THEN s.error_details ELSE t.error_details END,
                     modified_at = now()
                 FROM tally t
                 WHERE s.id = t.job_id AND s.lease_owner = $1
                   AND s.status IN ('running', 'cancelling')
                   AND (t.status IS DISTINCT FROM 'cancelled' OR s.status = 'cancelling')
                 RETURNING t.n, s.status
             ), fresh AS (
                 -- Entities not stored yet: a plain insert. Nothing else can
                 -- insert them meanwhile: one job per connection is active,
                 -- and its commits are fenced by (and serialized on) its row.
                 -- Subscripts and filters rather than joins: a join hashed
                 -- every payload (perf: a sixth of the statement's time).
                 INSERT INTO entities
                     (source_connection_id, entity_id, content_hash, payload, last_seen_job)
                 SELECT ($5::uuid[])[i.n + 1], i.entity_id, i.content_hash, i.payload,
                        ($4::uuid[])[i.n + 1]
                 FROM unnest($13::int[], $14::text[], $15::bytea[], $16::json[]) WITH ORDINALITY
                     AS i(n, entity_id, content_hash, payload, ord)
                 WHERE i.n = ANY (ARRAY(SELECT n FROM j))
                   AND NOT (SELECT known FROM stored)[i.ord]
             ), up AS (
                 -- Entities stored already: changed ones are rewritten, and a
                 -- full sync stamps the unchanged ones too.
                 INSERT INTO entities AS e
                     (source_connection_id, entity_id, content_hash, payload, last_seen_job)
                 SELECT ($5::uuid[])[i.n + 1], i.entity_id, i.content_hash, i.payload,
                        ($4::uuid[])[i.n + 1]
                 FROM unnest($13::int[], $14::text[], $15::bytea[], $16::json[]) WITH ORDINALITY
                     AS i(n, entity_id, content_hash, payload, ord)
                 WHERE i.n = ANY (ARRAY(SELECT n FROM j))
                   AND (SELECT known FROM stored)[i.ord]
                 ON CONFLICT (source_connection_id, entity_id) DO UPDATE SET
                     content_hash = excluded.content_hash,
                     payload = CASE WHEN e.content_hash = excluded.content_hash
                         THEN e.payload ELSE excluded.payload END,
                     updated_at = CASE WHEN e.content_hash = excluded.content_hash
                         THEN e.updated_at ELSE now() END,
                     last_seen_job = excluded.last_seen_job
                 WHERE e.content_hash <> excluded.content_hash
                    OR excluded.last_seen_job = ANY($19::uuid[])
             ), gone AS (
                 DELETE FROM entities e USING doomed d
                 WHERE e.source_connection_id = d.source_connection_id
                   AND e.entity_id = d.entity_id AND d.n IN (SELECT n FROM j)
             ), state AS (
                 UPDATE cursors c SET
                     entity_count = c.entity_count + t.inserted - t.deleted,
                     value = COALESCE(t.cursor, c.value),
                     job_id = CASE WHEN t.cursor IS NULL THEN c.job_id ELSE t.job_id END,
                     updated_at = now()
                 FROM tally t
                 WHERE c.source_connection_id = t.conn_id AND t.n IN (SELECT n FROM j)
             ), reauth AS (
                 UPDATE source_connections s SET
                     needs_reauth = true, auth_error_category = t.error_category,
                     auth_error_message = t.error, modified_at = now()
                 FROM tally t
                 WHERE s.id = t.conn_id AND t.error_category IS NOT NULL
                   AND t.n IN (SELECT n FROM j)
             )
             SELECT t.n, j.status, t.inserted, t.updated, t.deleted
             FROM tally t LEFT JOIN j ON j.n = t.n
             ORDER BY t.n";
