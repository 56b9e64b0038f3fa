//! Schedules: the connections whose next run is due, and one statement that
//! fires their ticks (job + outbox, as the API triggers) and moves each to
//! its next plan. What a tick comes to is decided in Rust from the cron
//! (`syncway_model::schedule`); these statements only read and write it.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::expect_rows;

/// `fire.sql`, with the trigger rule in place.
static FIRE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::jobs::with_trigger_rule(include_str!("fire.sql")));

/// A connection whose next run is due, as a scheduler sees it.
#[derive(Debug, Clone)]
pub struct DueConnection {
    pub id: Uuid,
    pub cron: Option<String>,
    pub timezone: String,
    /// The tick it waited for (NULL only if written so by hand).
    pub tick: Option<DateTime<Utc>>,
    pub due: DateTime<Utc>,
    pub continuous: bool,
    pub full_sync_every_seconds: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// When its last forced full sync completed.
    pub last_full_sync_at: Option<DateTime<Utc>>,
}

/// Locks and returns at most `limit` connections due by `now`, oldest
/// first; rows locked elsewhere are skipped. Run it in the transaction that
/// then calls [`fire`].
pub async fn take_due(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueConnection>, StoreError> {
    let statement = client.prepare_cached(include_str!("due.sql")).await?;
    let rows = client.query(&statement, &[&now, &limit]).await?;
    rows.iter()
        .map(|row| {
            Ok(DueConnection {
                id: row.try_get("id")?,
                cron: row.try_get("schedule_cron")?,
                timezone: row.try_get("schedule_timezone")?,
                tick: row.try_get("schedule_tick_at")?,
                due: row.try_get("next_run_at")?,
                continuous: row.try_get("continuous")?,
                full_sync_every_seconds: row.try_get("full_sync_every_seconds")?,
                created_at: row.try_get("created_at")?,
                last_full_sync_at: row.try_get("last_full_sync_at")?,
            })
        })
        .collect()
}

/// A scheduled job to create for a tick.
#[derive(Debug, Clone)]
pub struct TickJob {
    pub job_id: Uuid,
    pub force_full_sync: bool,
    /// The job's queue message (outbox payload).
    pub message: Vec<u8>,
    pub scheduled_for: DateTime<Utc>,
}

/// One due connection's tick: the job to run (if any) and the next plan
/// (`None`: no further tick).
#[derive(Debug, Clone)]
pub struct Tick {
    pub connection_id: Uuid,
    pub job: Option<TickJob>,
    pub next: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// What a tick came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    Triggered,
    /// The connection already has a pending, running or cancelling job.
    SkippedActive,
    /// The connection waits for new credentials.
    SkippedReauth,
    /// Another scheduler already ran this tick (the unique key held).
    AlreadyRun,
    /// No job was asked for (a plan was only moved on).
    Planned,
}

/// Fires `ticks` in one statement; outcomes come in input order.
pub async fn fire(
    client: &impl GenericClient,
    ticks: &[Tick],
) -> Result<Vec<TickOutcome>, StoreError> {
    if ticks.is_empty() {
        return Ok(Vec::new());
    }
    let connections: Vec<Uuid> = ticks.iter().map(|t| t.connection_id).collect();
    let jobs: Vec<Option<Uuid>> = ticks
        .iter()
        .map(|t| t.job.as_ref().map(|j| j.job_id))
        .collect();
    let forces: Vec<bool> = ticks
        .iter()
        .map(|t| t.job.as_ref().is_some_and(|j| j.force_full_sync))
        .collect();
    let messages: Vec<Option<&[u8]>> = ticks
        .iter()
        .map(|t| t.job.as_ref().map(|j| j.message.as_slice()))
        .collect();
    let scheduled: Vec<Option<DateTime<Utc>>> = ticks
        .iter()
        .map(|t| t.job.as_ref().map(|j| j.scheduled_for))
        .collect();
    let next_ticks: Vec<Option<DateTime<Utc>>> =
        ticks.iter().map(|t| t.next.map(|n| n.0)).collect();
    let next_runs: Vec<Option<DateTime<Utc>>> = ticks.iter().map(|t| t.next.map(|n| n.1)).collect();
    let statement = client.prepare_cached(&FIRE).await?;
    let rows = client
        .query(
            &statement,
            &[
                &connections,
                &jobs,
                &forces,
                &messages,
                &scheduled,
                &next_ticks,
                &next_runs,
            ],
        )
        .await?;
    expect_rows(&rows, ticks.len(), "a batch of schedule ticks")?;
    rows.iter()
        .zip(ticks)
        .map(|(row, tick)| {
            Ok(if tick.job.is_none() {
                TickOutcome::Planned
            } else if row.try_get::<_, bool>("triggered")? {
                TickOutcome::Triggered
            } else if row.try_get::<_, bool>("needs_reauth")? {
                TickOutcome::SkippedReauth
            } else if row.try_get::<_, bool>("tick_had_its_job")? {
                TickOutcome::AlreadyRun
            } else {
                TickOutcome::SkippedActive
            })
        })
        .collect()
}

/// A connection with a schedule and no plan yet.
#[derive(Debug, Clone)]
pub struct Unplanned {
    pub id: Uuid,
    pub cron: String,
    pub timezone: String,
}

/// Locks and returns at most `limit` connections that have a cron but no
/// plan (rows from before schedules were stored).
pub async fn take_unplanned(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<Unplanned>, StoreError> {
    let rows = client
        .query(include_str!("unplanned.sql"), &[&limit])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Unplanned {
                id: row.try_get("id")?,
                cron: row.try_get("schedule_cron")?,
                timezone: row.try_get("schedule_timezone")?,
            })
        })
        .collect()
}

/// Stores plans: (connection id, tick, due).
pub async fn set_plans(
    client: &impl GenericClient,
    plans: &[(Uuid, DateTime<Utc>, DateTime<Utc>)],
) -> Result<(), StoreError> {
    if plans.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = plans.iter().map(|p| p.0).collect();
    let ticks: Vec<DateTime<Utc>> = plans.iter().map(|p| p.1).collect();
    let dues: Vec<DateTime<Utc>> = plans.iter().map(|p| p.2).collect();
    client
        .execute(include_str!("plan.sql"), &[&ids, &ticks, &dues])
        .await?;
    Ok(())
}

/// How far behind the schedules are at `now`: connections due, and the due
/// time of the oldest of them.
pub async fn backlog(
    client: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    let row = client
        .query_one(
            "SELECT count(*), min(next_run_at) FROM source_connections WHERE next_run_at <= $1",
            &[&now],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}
