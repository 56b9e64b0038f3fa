//! The scheduler loop (CONTRACT.md §5): every worker process may run one,
//! any number at once. Each pass locks the due connections (`FOR UPDATE
//! SKIP LOCKED`), and in the same transaction triggers their jobs through
//! the API's path (job + outbox in one statement) and moves each to its
//! next tick. Nothing is kept in memory: a restart, or a scheduler that
//! dies mid-pass, loses no tick, and a tick is at most one job (the unique
//! key on connection + tick holds even if two schedulers met).
//!
//! The clock is injected ([`Clock`]), so that tests can move time.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use syncway_model::JobMessage;
use syncway_model::schedule::{self, CronSchedule};
use syncway_store::schedules::{self, DueConnection, Tick, TickJob, TickOutcome};
use syncway_store::{Pool, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Where a scheduler reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

type Labels = Vec<(&'static str, String)>;

/// `syncway_schedule_*`: ticks by outcome, lag, due connections.
#[derive(Clone, Default)]
pub struct SchedulerMetrics {
    pub ticks: Family<Labels, Counter>,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub due: Gauge,
}

impl std::fmt::Debug for SchedulerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerMetrics").finish_non_exhaustive()
    }
}

impl SchedulerMetrics {
    /// Registers the families on `registry` (prefix `syncway`).
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = SchedulerMetrics::default();
        // Every outcome from zero, so that rate() sees the first tick.
        for outcome in ["triggered", "skipped_active", "skipped_reauth", "missed"] {
            metrics
                .ticks
                .get_or_create(&vec![("outcome", outcome.to_owned())])
                .inc_by(0);
        }
        registry.register(
            "schedule_ticks",
            "Schedule ticks, by outcome: triggered, skipped_active, skipped_reauth, missed (ticks that fell in a downtime and were run as one)",
            metrics.ticks.clone(),
        );
        registry.register(
            "schedule_lag_seconds",
            "How late the oldest due tick was at this scheduler's last pass",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "schedule_due_connections",
            "Connections due at this scheduler's last pass",
            metrics.due.clone(),
        );
        metrics
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `scheduler.jitter_seconds`: the cap on each connection's delay.
    pub max_jitter: Duration,
    /// Pause between passes.
    pub interval: Duration,
    /// Connections per transaction.
    pub batch: i64,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub triggered: u64,
    pub skipped_active: u64,
    pub skipped_reauth: u64,
    pub missed: u64,
    /// Connections given their first plan.
    pub planned: u64,
}

pub struct Scheduler {
    pool: Pool,
    clock: Arc<dyn Clock>,
    options: Options,
    metrics: SchedulerMetrics,
}

impl Scheduler {
    pub fn new(
        pool: Pool,
        clock: Arc<dyn Clock>,
        options: Options,
        metrics: SchedulerMetrics,
    ) -> Self {
        Scheduler {
            pool,
            clock,
            options,
            metrics,
        }
    }

    /// Passes every `interval` until `stopping`.
    pub async fn run(self, stopping: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.options.interval) => {}
                () = stopping.cancelled() => return,
            }
            match self.pass().await {
                Ok(pass) if pass != Pass::default() => {
                    tracing::info!(
                        triggered = pass.triggered,
                        skipped_active = pass.skipped_active,
                        skipped_reauth = pass.skipped_reauth,
                        missed = pass.missed,
                        planned = pass.planned,
                        "scheduler pass"
                    );
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "scheduler pass failed; trying again next interval");
                }
            }
        }
    }

    /// One pass at the clock's time: plans connections that have none,
    /// then fires every due one, a batch per transaction.
    pub async fn pass(&self) -> Result<Pass, StoreError> {
        let now = self.clock.now();
        let mut pass = Pass::default();
        {
            let client = self.pool.get().await?;
            let (due, oldest) = schedules::backlog(&client, now).await?;
            self.metrics.due.set(due);
            let lag = oldest.map_or(0.0, |oldest| seconds(now - oldest).max(0.0));
            self.metrics.lag_seconds.set(lag);
        }
        while self.plan_batch(now, &mut pass).await? {}
        while self.fire_batch(now, &mut pass).await? {}
        crate::metrics::add_counts(
            &self.metrics.ticks,
            "outcome",
            &[
                ("triggered", pass.triggered),
                ("skipped_active", pass.skipped_active),
                ("skipped_reauth", pass.skipped_reauth),
                ("missed", pass.missed),
            ],
        );
        Ok(pass)
    }

    /// Plans a batch of connections that have a cron and no plan; true when
    /// there may be more.
    async fn plan_batch(&self, now: DateTime<Utc>, pass: &mut Pass) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let rows = schedules::take_unplanned(&transaction, self.options.batch).await?;
        let plans: Vec<_> = rows
            .iter()
            .filter_map(|row| {
                let parsed = CronSchedule::parse(&row.cron, &row.timezone)
                    .inspect_err(|error| {
                        tracing::warn!(connection_id = %row.id, %error, "a stored schedule does not parse; it is not run");
                    })
                    .ok()?;
                let plan = schedule::plan_after(&parsed, now, row.id, self.options.max_jitter)?;
                Some((row.id, plan.tick, plan.due))
            })
            .collect();
        schedules::set_plans(&transaction, &plans).await?;
        transaction.commit().await?;
        pass.planned += plans.len() as u64;
        // Rows that could not be planned stay as they are: stop, rather
        // than take them again.
        Ok(plans.len() == rows.len() && rows.len() as i64 == self.options.batch)
    }

    /// Fires a batch of due connections; true when there may be more.
    async fn fire_batch(&self, now: DateTime<Utc>, pass: &mut Pass) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let due = schedules::take_due(&transaction, now, self.options.batch).await?;
        let mut missed = 0;
        let ticks: Vec<Tick> = due
            .iter()
            .map(|connection| {
                let (tick, skipped) = self.tick(connection, now);
                missed += skipped;
                tick
            })
            .collect();
        let outcomes = schedules::fire(&transaction, &ticks).await?;
        transaction.commit().await?;
        pass.missed += missed;
        for outcome in outcomes {
            match outcome {
                TickOutcome::Triggered => pass.triggered += 1,
                TickOutcome::SkippedActive => pass.skipped_active += 1,
                TickOutcome::SkippedReauth => pass.skipped_reauth += 1,
                TickOutcome::AlreadyRun | TickOutcome::Planned => {}
            }
        }
        Ok(due.len() as i64 == self.options.batch)
    }

    /// What a due connection's tick comes to, and how many ticks it missed.
    fn tick(&self, connection: &DueConnection, now: DateTime<Utc>) -> (Tick, u64) {
        let parsed = connection
            .cron
            .as_deref()
            .map(|cron| CronSchedule::parse(cron, &connection.timezone));
        let Some(Ok(parsed)) = parsed else {
            tracing::warn!(connection_id = %connection.id, "a due connection has no valid schedule; unscheduled");
            let tick = Tick {
                connection_id: connection.id,
                job: None,
                next: None,
            };
            return (tick, 0);
        };
        let waiting = connection.tick.unwrap_or(connection.due);
        let firing = schedule::fire(
            &parsed,
            waiting,
            now,
            connection.id,
            self.options.max_jitter,
        );
        let job_id = Uuid::now_v7();
        let tick = Tick {
            connection_id: connection.id,
            job: Some(TickJob {
                job_id,
                force_full_sync: full_sync_due(connection, firing.tick),
                message: JobMessage::new(job_id, connection.id).encode(),
                scheduled_for: firing.tick,
            }),
            next: firing.next.map(|plan| (plan.tick, plan.due)),
        };
        (tick, firing.missed)
    }
}

/// A continuous connection's tick runs a forced full sync once
/// `full_sync_every` has passed since its last completed one (or, before
/// the first, since it was created: its first sync read everything). It is
/// the tick that counts, not when a scheduler got to it, so the rule gives
/// the same ticks whatever the schedulers' delay.
fn full_sync_due(connection: &DueConnection, tick: DateTime<Utc>) -> bool {
    let Some(every) = connection.full_sync_every_seconds else {
        return false;
    };
    if !connection.continuous {
        // Every sync of a connection that is not continuous is full.
        return false;
    }
    let since = connection
        .last_full_sync_at
        .map_or(connection.created_at, |last| {
            last.max(connection.created_at)
        });
    tick - since >= TimeDelta::seconds(every)
}

fn seconds(delta: TimeDelta) -> f64 {
    delta.num_milliseconds() as f64 / 1000.0
}
