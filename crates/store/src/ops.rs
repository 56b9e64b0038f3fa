//! What operators watch: the worker registry, the deployment's figures that
//! cost a query, and the snapshot row they are shared through.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// The advisory lock of the snapshot refresher (one process at a time).
const SNAPSHOT_LOCK: i64 = 0x7379_6e63_6f70_7331; // "syncops1"

/// A worker process as the registry shows it.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub concurrency: i32,
    pub jobs_in_flight: i32,
    /// Seen within its last three heartbeats.
    pub alive: bool,
}

/// Records (or refreshes) a worker process.
pub async fn register_worker(
    client: &impl GenericClient,
    worker: &WorkerRow,
    heartbeat_seconds: f64,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO workers (id, hostname, version, started_at, last_seen, heartbeat_seconds,
                                  concurrency, jobs_in_flight)
             VALUES ($1, $2, $3, $4, now(), $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET last_seen = now(),
                 jobs_in_flight = EXCLUDED.jobs_in_flight",
            &[
                &worker.id,
                &worker.hostname,
                &worker.version,
                &worker.started_at,
                &heartbeat_seconds,
                &worker.concurrency,
                &worker.jobs_in_flight,
            ],
        )
        .await?;
    Ok(())
}

/// Removes a worker's row (its clean shutdown).
pub async fn deregister_worker(client: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    client
        .execute("DELETE FROM workers WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// Forgets workers unseen for longer than `after`.
pub async fn prune_workers(
    client: &impl GenericClient,
    after: std::time::Duration,
) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            "DELETE FROM workers WHERE last_seen < now() - make_interval(secs => $1)",
            &[&after.as_secs_f64()],
        )
        .await?)
}

/// Every registered worker, newest first.
pub async fn workers(client: &impl GenericClient) -> Result<Vec<WorkerRow>, StoreError> {
    let rows = client
        .query(
            "SELECT id, hostname, version, started_at, last_seen, concurrency, jobs_in_flight,
                    last_seen >= now() - make_interval(secs => 3 * heartbeat_seconds) AS alive
             FROM workers ORDER BY started_at DESC, id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(WorkerRow {
                id: row.try_get("id")?,
                hostname: row.try_get("hostname")?,
                version: row.try_get("version")?,
                started_at: row.try_get("started_at")?,
                last_seen: row.try_get("last_seen")?,
                concurrency: row.try_get("concurrency")?,
                jobs_in_flight: row.try_get("jobs_in_flight")?,
                alive: row.try_get("alive")?,
            })
        })
        .collect()
}

/// The deployment's figures that Postgres answers.
#[derive(Debug, Clone, Default)]
pub struct DbFigures {
    pub jobs_by_status: Vec<(String, i64)>,
    pub oldest_pending_age_seconds: Option<f64>,
    pub outbox_pending: i64,
    /// Running jobs of the `top` organizations with the most, and of all
    /// the others together (`None`).
    pub running_by_organization: Vec<(Option<Uuid>, i64)>,
}

/// Counts jobs by status (active ones as they are now, finished ones as
/// many as ever finished so), the oldest pending job's age, the outbox backlog
/// and running jobs per organization (the `top` ones, the rest summed).
pub async fn db_figures(client: &impl GenericClient, top: i64) -> Result<DbFigures, StoreError> {
    let jobs_by_status = client
        .query(
            // Active jobs through the partial index on `active`; finished
            // ones from the totals kept as they finish (V17), after moving
            // the ends recorded since the last refresh into them (the
            // caller holds the refresher's lock): nothing here reads the
            // history.
            "WITH moved AS (
                 DELETE FROM job_ends RETURNING status
             ), added AS (
                 INSERT INTO job_totals AS t (status, n)
                 SELECT status, count(*) FROM moved GROUP BY status
                 ON CONFLICT (status) DO UPDATE SET n = t.n + EXCLUDED.n
                 RETURNING status, n
             )
             SELECT status, count(*) FROM sync_jobs WHERE active GROUP BY status
             UNION ALL
             SELECT status, n FROM added
             UNION ALL
             SELECT status, n FROM job_totals WHERE status NOT IN (SELECT status FROM added)",
            &[],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    let ages = client
        .query_one(
            // `active` lets it read sync_jobs_active_by_age (V11).
            "SELECT (SELECT extract(epoch FROM now() - min(created_at))::float8
                     FROM sync_jobs WHERE active AND status = 'pending'),
                    (SELECT count(*) FROM outbox_jobs)",
            &[],
        )
        .await?;
    let running = client
        .query(
            "WITH per_org AS (
                 SELECT c.organization_id, count(*) AS running
                 FROM sync_jobs j JOIN source_connections c ON c.id = j.source_connection_id
                 WHERE j.active AND j.status IN ('running', 'cancelling')
                 GROUP BY c.organization_id
             ), ranked AS (
                 SELECT organization_id, running,
                        row_number() OVER (ORDER BY running DESC, organization_id) AS rank
                 FROM per_org
             )
             SELECT CASE WHEN rank <= $1 THEN organization_id END AS organization_id,
                    sum(running)::bigint
             FROM ranked GROUP BY 1 ORDER BY 2 DESC",
            &[&top],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(DbFigures {
        jobs_by_status,
        oldest_pending_age_seconds: ages.try_get(0)?,
        outbox_pending: ages.try_get(1)?,
        running_by_organization: running,
    })
}

/// Takes the refresher's lock for this transaction when no other process
/// holds it and the snapshot is older than `every`: true when this process
/// is to refresh it now.
pub async fn claim_refresh(
    client: &impl GenericClient,
    every: std::time::Duration,
) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1)
                    AND NOT EXISTS (SELECT 1 FROM ops_snapshot
                                    WHERE taken_at > now() - make_interval(secs => $2))",
            &[&SNAPSHOT_LOCK, &every.as_secs_f64()],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Replaces the snapshot.
pub async fn write_snapshot(
    client: &impl GenericClient,
    figures: &serde_json::Value,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO ops_snapshot (id, taken_at, figures) VALUES (true, now(), $1)
             ON CONFLICT (id) DO UPDATE SET taken_at = now(), figures = EXCLUDED.figures",
            &[figures],
        )
        .await?;
    Ok(())
}

/// The snapshot and when it was taken, if there is one.
pub async fn read_snapshot(
    client: &impl GenericClient,
) -> Result<Option<(DateTime<Utc>, serde_json::Value)>, StoreError> {
    let row = client
        .query_opt("SELECT taken_at, figures FROM ops_snapshot", &[])
        .await?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
}
