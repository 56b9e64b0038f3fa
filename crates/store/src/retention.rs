//! Removing what history no longer needs, a small batch per transaction.
//!
//! Each step is one statement in its own short transaction, which first
//! takes the retention lock for that transaction only: one process removes
//! at a time, and no step holds a lock anything else waits on for longer
//! than one batch. What is never removed: an active job (only finished jobs
//! are candidates), the newest `keep_per_connection` finished jobs of a
//! connection, and its last completed full sync (what `full_sync_every`
//! reads).

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use uuid::Uuid;

use crate::StoreError;

/// The advisory lock of the retention loop.
const RETENTION_LOCK: i64 = 0x7379_6e63_7265_746e; // "syncretn"

/// At most this many rows of the table a step works on per transaction.
pub const BATCH_ROWS: i64 = 1000;

/// How long the console's per-minute samples are kept (its charts show
/// the last 24 hours).
pub const SAMPLE_DAYS: i32 = 7;

/// The rules (CONTRACT.md §9); 0 turns a rule off.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub job_days: u32,
    pub keep_per_connection: u32,
    pub audit_days: u32,
    /// Webhook messages (with their deliveries and attempts).
    pub webhook_days: u32,
    /// Rows per transaction (at most [`BATCH_ROWS`]).
    pub batch: i64,
}

/// Where the sweep of finished jobs got to: the last job it looked at.
/// Jobs it kept behind that point are not looked at again until the
/// sweep starts over, so one pass reads each finished job once.
pub type SweepPosition = Option<(DateTime<Utc>, Uuid)>;

/// What one step removed, table by table.
#[derive(Debug, Default, Clone)]
pub struct Removed {
    pub rows: Vec<(&'static str, u64)>,
    /// The step found more to do.
    pub more: bool,
}

impl Removed {
    fn add(&mut self, table: &'static str, rows: i64) {
        if rows > 0 {
            self.rows.push((table, rows.unsigned_abs()));
        }
    }

    pub fn total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// Runs `statement` with `params` under the retention lock; `None` when
/// another process holds it.
async fn locked(
    client: &mut Client,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let transaction = client.transaction().await?;
    let locked: bool = transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])
        .await?
        .try_get(0)?;
    if !locked {
        return Ok(None);
    }
    // Every step finds its rows through an index. Without statistics (a
    // table just bulk-loaded or restored) or with an empty batch, the
    // planner may instead read a whole table, which on 60M timeline rows
    // takes minutes; and a batch this small never repays compiling it.
    transaction
        .batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL jit = off")
        .await?;
    let row = transaction.query_one(statement, params).await?;
    transaction.commit().await?;
    Ok(Some(row))
}

/// One batch of a deleted connection's leftovers: its entities first,
/// then its jobs (with their timelines; their ids become tombstones, so a
/// message still queued for one is dropped), then its counters and the
/// connection's own entry. `None` when another process holds the lock.
pub async fn purge_deleted_connection(
    client: &mut Client,
    rules: Rules,
) -> Result<Option<Removed>, StoreError> {
    let batch = rules.batch.clamp(1, BATCH_ROWS);
    let Some(row) = locked(client, include_str!("retention/purge.sql"), &[&batch]).await? else {
        return Ok(None);
    };
    let mut removed = Removed::default();
    removed.add("entities", row.try_get("entities")?);
    removed.add("sync_jobs", row.try_get("jobs")?);
    removed.add("job_timeline", row.try_get("timeline")?);
    removed.add("deleted_connections", row.try_get("connections")?);
    removed.more = row.try_get::<_, Option<Uuid>>("connection")?.is_some();
    Ok(Some(removed))
}

/// One batch of the sweep of finished jobs older than the rule, from
/// `position` on. Returns what went and where the sweep got to (`None`:
/// it reached the end).
pub async fn remove_old_jobs(
    client: &mut Client,
    rules: Rules,
    position: SweepPosition,
) -> Result<Option<(Removed, SweepPosition)>, StoreError> {
    if rules.job_days == 0 {
        return Ok(Some((Removed::default(), None)));
    }
    let days = i32::try_from(rules.job_days).unwrap_or(i32::MAX);
    let keep = i64::from(rules.keep_per_connection);
    let (after_at, after_id) = position.unzip();
    let Some(row) = locked(
        client,
        include_str!("retention/old_jobs.sql"),
        &[
            &days,
            &after_at,
            &after_id,
            &rules.batch.clamp(1, BATCH_ROWS),
            &keep,
        ],
    )
    .await?
    else {
        return Ok(None);
    };
    let mut removed = Removed::default();
    removed.add("sync_jobs", row.try_get("jobs")?);
    removed.add("job_timeline", row.try_get("timeline")?);
    let next = match (
        row.try_get::<_, Option<DateTime<Utc>>>("last_at")?,
        row.try_get::<_, Option<Uuid>>("last_id")?,
    ) {
        (Some(at), Some(id)) => Some((at, id)),
        _ => None,
    };
    removed.more = next.is_some();
    Ok(Some((removed, next)))
}

/// One batch of audit entries and webhook messages older than their
/// rules (a message's deliveries and attempts go with it), and of
/// tombstones of deleted jobs older than a week, of the console's samples
/// older than [`SAMPLE_DAYS`] and of its expired sessions, and of bulk
/// tasks finished more than a week ago (with their items).
pub async fn remove_old_entries(
    client: &mut Client,
    rules: Rules,
) -> Result<Option<Removed>, StoreError> {
    let days = i32::try_from(rules.audit_days).unwrap_or(i32::MAX);
    let webhook_days = i32::try_from(rules.webhook_days).unwrap_or(i32::MAX);
    let Some(row) = locked(
        client,
        "WITH old_audit AS (
             DELETE FROM audit_log WHERE id IN (
                 SELECT id FROM audit_log
                 WHERE $1::int > 0 AND at < now() - make_interval(days => $1)
                 ORDER BY id LIMIT $2)
             RETURNING 1
         ), old_messages AS (
             DELETE FROM webhook_messages WHERE id IN (
                 SELECT id FROM webhook_messages
                 WHERE $3::int > 0 AND created_at < now() - make_interval(days => $3)
                 ORDER BY created_at LIMIT $2)
             RETURNING 1
         ), old_tombstones AS (
             DELETE FROM deleted_jobs WHERE job_id IN (
                 SELECT job_id FROM deleted_jobs WHERE deleted_at < now() - interval '7 days'
                 ORDER BY deleted_at LIMIT $2)
             RETURNING 1
         ), old_samples AS (
             DELETE FROM console_samples WHERE minute IN (
                 SELECT minute FROM console_samples
                 WHERE minute < now() - make_interval(days => $4)
                 ORDER BY minute LIMIT $2)
             RETURNING 1
         ), old_tasks AS (
             DELETE FROM bulk_tasks WHERE id IN (
                 SELECT id FROM bulk_tasks
                 WHERE status <> 'running' AND finished_at < now() - interval '7 days'
                 ORDER BY finished_at LIMIT $2)
             RETURNING id
         ), old_task_items AS (
             DELETE FROM bulk_task_items WHERE task_id IN (SELECT id FROM old_tasks)
             RETURNING 1
         ), old_sessions AS (
             DELETE FROM console_sessions WHERE token_hash IN (
                 SELECT token_hash FROM console_sessions WHERE expires_at < now()
                 ORDER BY expires_at LIMIT $2)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM old_audit) AS audit,
                (SELECT count(*) FROM old_tombstones) AS tombstones,
                (SELECT count(*) FROM old_messages) AS messages,
                (SELECT count(*) FROM old_samples) AS samples,
                (SELECT count(*) FROM old_sessions) AS sessions,
                (SELECT count(*) FROM old_tasks) AS tasks,
                (SELECT count(*) FROM old_task_items) AS task_items",
        &[
            &days,
            &rules.batch.clamp(1, BATCH_ROWS),
            &webhook_days,
            &SAMPLE_DAYS,
        ],
    )
    .await?
    else {
        return Ok(None);
    };
    let mut removed = Removed::default();
    let audit: i64 = row.try_get("audit")?;
    let tombstones: i64 = row.try_get("tombstones")?;
    let messages: i64 = row.try_get("messages")?;
    removed.add("audit_log", audit);
    removed.add("deleted_jobs", tombstones);
    let samples: i64 = row.try_get("samples")?;
    let sessions: i64 = row.try_get("sessions")?;
    let tasks: i64 = row.try_get("tasks")?;
    let task_items: i64 = row.try_get("task_items")?;
    removed.add("webhook_messages", messages);
    removed.add("console_samples", samples);
    removed.add("console_sessions", sessions);
    removed.add("bulk_tasks", tasks);
    removed.add("bulk_task_items", task_items);
    removed.more = [audit, tombstones, messages, samples, sessions, tasks].contains(&rules.batch);
    Ok(Some(removed))
}
