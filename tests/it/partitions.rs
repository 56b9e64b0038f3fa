//! A worker that is alive but stops answering: frozen (SIGSTOP) inside a
//! large batch's transaction, or cut off from Postgres or from the broker
//! by a network partition (its own network namespace, its packets dropped
//! by nftables). Its locks are gone within the session bound (a third of
//! the lease) when it stopped between statements, and within the lease and
//! a reaper interval when it stopped inside a statement waiting for its own
//! data (the reapers terminate such sessions); another worker takes its job
//! over within lease + grace + reap interval; and whatever it writes when
//! it comes back is fenced off: every job completes once, counted exactly.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::harness::partition::{Link, Partitioned};
use crate::harness::{DEADLINE, TestApp, TestEnv, WorkerProcess, counts, eventually};

const LEASE: u64 = 3;
/// The session bound: a third of the lease, at least a second.
const BOUND: Duration = Duration::from_secs(1);
/// A session stuck inside a statement waiting for its frozen client: the
/// lease runs out, and the next reaper pass ends it.
const STUCK: Duration = Duration::from_secs(LEASE + 1);
/// Lease + grace + reaper interval, and two seconds for the machine.
const TAKEOVER: Duration = Duration::from_secs(LEASE + LEASE + 1 + 2);

fn vars() -> Vec<(&'static str, String)> {
    vec![
        ("SYNCWAY_WORKER__REAP_INTERVAL_SECONDS", "1".into()),
        ("SYNCWAY_RETRY__MAX_ATTEMPTS", "5".into()),
    ]
}

/// The id of the only worker registered so far.
async fn only_worker(app: &TestApp) -> String {
    let db = app.db().await;
    eventually("the worker registers", DEADLINE, || async {
        db.query_opt("SELECT id FROM workers", &[])
            .await
            .ok()
            .flatten()
            .map(|row| row.get(0))
    })
    .await
}

/// Whether a session of `worker` is inside a transaction now.
async fn in_transaction(app: &TestApp, worker: &str) -> bool {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = $1 AND xact_start IS NOT NULL",
            &[&worker],
        )
        .await
        .map(|row| row.get::<_, i64>(0) > 0)
        .unwrap_or(false)
}

/// Adds a worker (in this process) that takes jobs over.
async fn add_rescuer(app: &mut TestApp) {
    app.add_worker(|settings| {
        settings.worker.lease_seconds = LEASE;
        settings.worker.reap_interval_seconds = 1;
        settings.retry.max_attempts = 5;
    })
    .await;
}

/// Waits until the job is taken over (attempt 2); returns how long after
/// `since` that was.
async fn taken_over(app: &TestApp, job: Uuid, since: Instant) -> Duration {
    eventually("another worker takes the job over", DEADLINE, || async {
        (app.attempt(job).await == 2).then(|| since.elapsed())
    })
    .await
}

#[tokio::test]
async fn a_worker_frozen_inside_a_large_batch_loses_its_locks_within_the_bound() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // Batches of 5,000 (each a transaction of its own) as fast as they go.
    let connection = app
        .stub_connection(json!({"entity_count": 100_000}), false)
        .await;
    let frozen = WorkerProcess::start(&app.env, LEASE, &vars());
    let worker = only_worker(&app).await;
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    // Freeze it inside a transaction: stop it, and if it was between
    // transactions, let it go on a little and try again.
    let mut tries = 0;
    let froze = loop {
        if in_transaction(&app, &worker).await {
            frozen.pause();
            if in_transaction(&app, &worker).await {
                break Instant::now();
            }
            frozen.resume();
        }
        tries += 1;
        assert!(
            tries < 10_000,
            "the worker was never caught inside a transaction"
        );
    };
    add_rescuer(&mut app).await;
    let released = eventually("its transaction ends", DEADLINE, || async {
        (!in_transaction(&app, &worker).await).then(|| froze.elapsed())
    })
    .await;
    let takeover = taken_over(&app, job, froze).await;
    eprintln!(
        "frozen in a transaction: its locks went after {:.2} s (bound {} s between statements, {} s inside one), the job was taken over after {:.2} s",
        released.as_secs_f64(),
        BOUND.as_secs(),
        STUCK.as_secs(),
        takeover.as_secs_f64()
    );
    assert!(released <= STUCK + Duration::from_secs(2), "{released:?}");
    assert!(takeover <= TAKEOVER, "{takeover:?}");
    // It wakes: nothing it writes lands.
    frozen.resume();
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done)[0], 100_000, "{done}");
    assert_eq!(app.entity_count(connection).await, 100_000);
    assert_eq!(app.attempt(job).await, 2);
}

#[tokio::test]
async fn a_worker_cut_off_from_postgres_holds_nothing_and_writes_nothing() {
    let Some(partition) = Partitioned::new().await else {
        return;
    };
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 3000, "delay_ms_per_entity": 2}),
            false,
        )
        .await;
    let _cut = partition.worker(&app.env, LEASE, &vars());
    let worker = only_worker(&app).await;
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    add_rescuer(&mut app).await;

    partition.cut(Link::Postgres);
    let cut = Instant::now();
    let released = eventually("no transaction of it is left", DEADLINE, || async {
        (!in_transaction(&app, &worker).await).then(|| cut.elapsed())
    })
    .await;
    let takeover = taken_over(&app, job, cut).await;
    eprintln!(
        "cut off from Postgres: no transaction of it after {:.2} s, the job taken over after {:.2} s",
        released.as_secs_f64(),
        takeover.as_secs_f64()
    );
    assert!(released <= BOUND + Duration::from_secs(2), "{released:?}");
    assert!(takeover <= TAKEOVER, "{takeover:?}");
    // The network comes back: the cut worker's late writes are fenced off.
    partition.restore();
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done)[0], 3000, "{done}");
    assert_eq!(app.entity_count(connection).await, 3000);
    assert_eq!(app.attempt(job).await, 2);
}

#[tokio::test]
async fn a_worker_cut_off_from_the_broker_loses_nothing_and_doubles_nothing() {
    let Some(partition) = Partitioned::new().await else {
        return;
    };
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let mut vars = vars();
    vars.push(("SYNCWAY_WORKER__CONCURRENCY", "2".into()));
    let _cut = partition.worker(&app.env, LEASE, &vars);
    only_worker(&app).await;
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let connection = app
            .stub_connection(
                json!({"entity_count": 1500, "delay_ms_per_entity": 2}),
                false,
            )
            .await;
        let job = app.run(connection, false).await;
        app.running_with_data(connection, job).await;
        jobs.push((connection, job));
    }
    add_rescuer(&mut app).await;
    // Cut from the broker, the worker goes on with the jobs it runs (they
    // need only Postgres); new jobs run elsewhere meanwhile.
    partition.cut(Link::Broker);
    for _ in 0..3 {
        let connection = app
            .stub_connection(
                json!({"entity_count": 300, "delay_ms_per_entity": 2}),
                false,
            )
            .await;
        jobs.push((connection, app.run(connection, false).await));
    }
    for (connection, job) in &jobs[2..] {
        let done = app.finished_job(*connection, *job).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    partition.restore();
    for (connection, job) in &jobs {
        let done = app.finished_job(*connection, *job).await;
        assert_eq!(done["status"], "completed", "{done}");
        let expected = if jobs[..2].contains(&(*connection, *job)) {
            1500
        } else {
            300
        };
        assert_eq!(counts(&done), [expected, 0, 0, 0], "{done}");
        assert_eq!(app.attempt(*job).await, 1, "{done}");
    }
}
