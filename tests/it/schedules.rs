//! Schedules (CONTRACT.md §5): ticks fire once however many schedulers run,
//! a tick meeting an active job is skipped, a downtime's ticks collapse into
//! one run, full syncs come on their cadence, DST days run once per local
//! tick, a connection waiting for credentials is not run (the API side,
//! PATCH, pause and validation, is in `schedule_api`). Schedulers here read an injected clock, so that
//! a test moves time rather than waiting for it; one test waits for a real
//! minute tick with three worker processes' schedulers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use syncway_worker::scheduler::{Clock, Options, Pass, Scheduler, SchedulerMetrics};
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv, eventually, id_of};

/// A clock the test sets.
pub(crate) struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub(crate) fn at(t: DateTime<Utc>) -> Arc<Self> {
        Arc::new(ManualClock(Mutex::new(t)))
    }

    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("the clock") = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("the clock")
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}

/// An API that plans without jitter, so that due times are the ticks.
pub(crate) async fn app_without_jitter(workers: usize) -> TestApp {
    let mut app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.scheduler.jitter_seconds = 0;
    })
    .await;
    for _ in 0..workers {
        app.add_worker(|_| {}).await;
    }
    app
}

/// A scheduler of its own (its own pool: its own Postgres sessions), on
/// `clock`, without jitter.
pub(crate) fn scheduler(app: &TestApp, clock: Arc<ManualClock>) -> Scheduler {
    let pool = syncway_store::connect(&syncway_store::PoolSettings::new(
        &app.env.database_url(),
        2,
    ))
    .expect("a pool");
    Scheduler::new(
        pool,
        clock,
        Options {
            max_jitter: Duration::ZERO,
            interval: Duration::from_millis(100),
            batch: 500,
        },
        SchedulerMetrics::default(),
    )
}

pub(crate) async fn scheduled(app: &TestApp, body: Value) -> Uuid {
    let collection = app.create_collection().await;
    let mut body = body;
    body["short_name"] = json!("stub");
    body["readable_collection_id"] = json!(collection);
    body["config"] = json!({"entity_count": 1});
    let (status, created) = app.call("POST", "/source-connections", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    id_of(&created)
}

/// The connection's scheduled jobs: (tick, forced full, status), by tick.
async fn scheduled_jobs(app: &TestApp, connection: Uuid) -> Vec<(DateTime<Utc>, bool, String)> {
    app.db()
        .await
        .query(
            "SELECT scheduled_for, force_full_sync, status FROM sync_jobs
             WHERE source_connection_id = $1 AND trigger = 'schedule' ORDER BY scheduled_for",
            &[&connection],
        )
        .await
        .expect("reading jobs")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Waits until the connection has no active job.
async fn idle(app: &TestApp, connection: Uuid) {
    eventually(
        "the connection's jobs to end",
        crate::harness::DEADLINE,
        || async {
            let active: i64 = app
                .db()
                .await
                .query_one(
                    "SELECT count(*) FROM sync_jobs WHERE source_connection_id = $1 AND active",
                    &[&connection],
                )
                .await
                .ok()?
                .get(0);
            (active == 0).then_some(())
        },
    )
    .await;
}

/// A connection body's `schedule.next_run`, if it has one.
pub(crate) fn next_run_of(body: &Value) -> Option<DateTime<Utc>> {
    body["schedule"]["next_run"]
        .as_str()
        .and_then(|t| t.parse().ok())
}

/// The connection's `next_run`, which it must have.
async fn due(app: &TestApp, connection: Uuid) -> DateTime<Utc> {
    next_run_of(&app.connection(connection).await).expect("a next run")
}

pub(crate) async fn pass(scheduler: &Scheduler) -> Pass {
    scheduler.pass().await.expect("a scheduler pass")
}

#[tokio::test]
async fn three_schedulers_fire_each_tick_once() {
    let app = app_without_jitter(1).await;
    let connection = scheduled(
        &app,
        json!({"schedule": {"continuous": true, "cron": "* * * * *"}}),
    )
    .await;
    let body = app.connection(connection).await;
    let first = next_run_of(&body).expect("a next run");
    let clock = ManualClock::at(first);
    let schedulers: Vec<Scheduler> = (0..3).map(|_| scheduler(&app, clock.clone())).collect();
    for minute in 0..3 {
        let tick = first + TimeDelta::minutes(minute);
        clock.set(tick + TimeDelta::seconds(1));
        let passes = futures_util::future::join_all(schedulers.iter().map(pass)).await;
        let triggered: u64 = passes.iter().map(|p| p.triggered).sum();
        assert_eq!(triggered, 1, "tick {tick}: {passes:?}");
        idle(&app, connection).await;
        // Passes again within the same minute find nothing due.
        let again = futures_util::future::join_all(schedulers.iter().map(pass)).await;
        assert!(again.iter().all(|p| *p == Pass::default()), "{again:?}");
    }
    let jobs = scheduled_jobs(&app, connection).await;
    let ticks: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.0).collect();
    assert_eq!(
        ticks,
        (0..3)
            .map(|m| first + TimeDelta::minutes(m))
            .collect::<Vec<_>>()
    );
    assert!(jobs.iter().all(|j| j.2 == "completed"), "{jobs:?}");
    // The wire form says who asked, and for which tick.
    let listed = app.jobs(connection).await;
    let newest = &listed[0];
    assert_eq!(newest["trigger"], "schedule", "{newest}");
    assert_eq!(
        newest["scheduled_for"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok()),
        Some(first + TimeDelta::minutes(2))
    );
}

#[tokio::test]
async fn a_tick_meeting_an_active_job_is_skipped_not_queued() {
    // No worker: the API-triggered job stays pending.
    let app = app_without_jitter(0).await;
    let connection = scheduled(
        &app,
        json!({"schedule": {"continuous": true, "cron": "*/5 * * * *"}}),
    )
    .await;
    let job = app.run(connection, false).await;
    assert_eq!(app.job(connection, job).await["trigger"], "api");
    assert!(app.job(connection, job).await["scheduled_for"].is_null());
    let due = due(&app, connection).await;
    let clock = ManualClock::at(due + TimeDelta::seconds(1));
    let scheduler = scheduler(&app, clock.clone());
    let skipped = pass(&scheduler).await;
    assert_eq!((skipped.triggered, skipped.skipped_active), (0, 1));
    assert!(scheduled_jobs(&app, connection).await.is_empty());
    // The next tick is planned: the skipped one is not run late.
    let next = next_run_of(&app.connection(connection).await);
    assert_eq!(next, Some(due + TimeDelta::minutes(5)));
}

#[tokio::test]
async fn ticks_missed_in_a_downtime_run_once_and_are_counted() {
    let app = app_without_jitter(1).await;
    let connection = scheduled(
        &app,
        json!({"schedule": {"continuous": true, "cron": "*/5 * * * *"}}),
    )
    .await;
    let due = due(&app, connection).await;
    // Everything was down for 17 minutes past the due tick.
    let clock = ManualClock::at(due + TimeDelta::minutes(17));
    let scheduler = scheduler(&app, clock.clone());
    let caught_up = pass(&scheduler).await;
    assert_eq!(
        (caught_up.triggered, caught_up.missed),
        (1, 3),
        "{caught_up:?}"
    );
    let jobs = scheduled_jobs(&app, connection).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].0,
        due + TimeDelta::minutes(15),
        "the latest due tick"
    );
    assert_eq!(pass(&scheduler).await, Pass::default());
}

#[tokio::test]
async fn a_full_sync_comes_once_full_sync_every_has_passed_since_the_last_one() {
    let app = app_without_jitter(1).await;
    let connection = scheduled(
        &app,
        json!({"schedule": {"continuous": true, "cron": "*/5 * * * *", "full_sync_every": "1h"}}),
    )
    .await;
    let body = app.connection(connection).await;
    assert_eq!(body["schedule"]["full_sync_every"], "1h");
    let first = next_run_of(&body).expect("a next run");
    // Created just after the tick boundary before its first tick: the tick
    // an hour later is 0.3 s short of an hour after creation, however late
    // a scheduler gets to it (here 1 s), so the full sync is the next one.
    let created = first - TimeDelta::minutes(5) + TimeDelta::milliseconds(300);
    app.db()
        .await
        .execute(
            "UPDATE source_connections SET created_at = $2 WHERE id = $1",
            &[&connection, &created],
        )
        .await
        .expect("moving created_at");
    let clock = ManualClock::at(first);
    let scheduler = scheduler(&app, clock.clone());
    // Every five minutes for 2 h 10 min: full at the first tick an hour
    // after creation, then an hour after that full sync's tick.
    for n in 0..27 {
        clock.set(first + TimeDelta::minutes(5 * n) + TimeDelta::seconds(1));
        assert_eq!(pass(&scheduler).await.triggered, 1, "tick {n}");
        idle(&app, connection).await;
    }
    let jobs = scheduled_jobs(&app, connection).await;
    assert_eq!(jobs.len(), 27);
    assert!(jobs.iter().all(|j| j.2 == "completed"), "{jobs:?}");
    let full: Vec<DateTime<Utc>> = jobs.iter().filter(|j| j.1).map(|j| j.0).collect();
    assert_eq!(full.len(), 2, "{full:?}");
    assert!(full[0] - created >= TimeDelta::hours(1));
    assert!(full[0] - created < TimeDelta::hours(1) + TimeDelta::minutes(5));
    assert_eq!(full[1] - full[0], TimeDelta::hours(1));
}

#[tokio::test]
async fn dst_days_in_berlin_run_once_per_local_tick() {
    let app = app_without_jitter(1).await;
    let connection = scheduled(
        &app,
        json!({"schedule": {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}}),
    )
    .await;
    let clock = ManualClock::at(utc("2027-03-27T12:00:00Z"));
    let scheduler = scheduler(&app, clock.clone());
    // Catch-up from today to the 27th: one run, for 02:30 CET that day.
    assert_eq!(pass(&scheduler).await.triggered, 1);
    idle(&app, connection).await;
    // Through the spring-forward night and the fall-back night, every ten
    // minutes.
    for (from, to) in [
        ("2027-03-27T12:00:00Z", "2027-03-30T12:00:00Z"),
        ("2027-10-30T12:00:00Z", "2027-11-01T12:00:00Z"),
    ] {
        let (mut t, end) = (utc(from), utc(to));
        while t < end {
            clock.set(t);
            if pass(&scheduler).await.triggered > 0 {
                idle(&app, connection).await;
            }
            t += TimeDelta::minutes(10);
        }
    }
    let ticks: Vec<DateTime<Utc>> = scheduled_jobs(&app, connection)
        .await
        .iter()
        .map(|j| j.0)
        .collect();
    assert_eq!(
        ticks,
        vec![
            utc("2027-03-27T01:30:00Z"), // 02:30 CET (the catch-up)
            utc("2027-03-28T01:00:00Z"), // no 02:30 that day: 03:00 CEST, once
            utc("2027-03-29T00:30:00Z"), // 02:30 CEST
            utc("2027-03-30T00:30:00Z"),
            utc("2027-10-30T00:30:00Z"), // the catch-up after the summer
            utc("2027-10-31T00:30:00Z"), // 02:30 CEST, and not again at 02:30 CET
            utc("2027-11-01T01:30:00Z"), // 02:30 CET
        ]
    );
}

#[tokio::test]
async fn a_connection_waiting_for_credentials_is_not_run() {
    let app = app_without_jitter(0).await;
    let connection = scheduled(
        &app,
        json!({"schedule": {"continuous": true, "cron": "*/5 * * * *"}}),
    )
    .await;
    let due = due(&app, connection).await;
    // As a 401 from the source leaves it (tests/it/faults.rs).
    app.db()
        .await
        .execute(
            "UPDATE source_connections SET needs_reauth = true WHERE id = $1",
            &[&connection],
        )
        .await
        .expect("marking the connection");
    assert!(app.connection(connection).await["schedule"]["next_run"].is_null());
    let scheduler = scheduler(&app, ManualClock::at(due + TimeDelta::seconds(1)));
    let skipped = pass(&scheduler).await;
    assert_eq!((skipped.triggered, skipped.skipped_reauth), (0, 1));
    assert!(scheduled_jobs(&app, connection).await.is_empty());
}

#[tokio::test]
async fn a_real_minute_tick_runs_once_with_three_worker_schedulers() {
    // Real time: the next minute's tick, three worker processes' schedulers.
    let mut app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.scheduler.jitter_seconds = 0;
    })
    .await;
    for _ in 0..3 {
        app.add_worker(|settings| {
            settings.scheduler.enabled = true;
            settings.scheduler.jitter_seconds = 0;
            settings.scheduler.interval_ms = 200;
        })
        .await;
    }
    let connection = scheduled(
        &app,
        json!({"schedule": {"continuous": true, "cron": "* * * * *"}}),
    )
    .await;
    let job = eventually(
        "a scheduled job to complete",
        Duration::from_secs(75),
        || async {
            let jobs = scheduled_jobs(&app, connection).await;
            jobs.iter().any(|j| j.2 == "completed").then_some(jobs)
        },
    )
    .await;
    assert_eq!(job.len(), 1, "{job:?}");
    assert_eq!(job[0].0.timestamp() % 60, 0, "a minute tick");
    let ticks: f64 = {
        let mut total = 0.0;
        for worker in &app.workers {
            total += worker
                .metric("syncway_schedule_ticks_total{outcome=\"triggered\"}")
                .await;
        }
        total
    };
    assert_eq!(ticks, 1.0);
}
