//! Faults caused on purpose: a cancel that must reach running code at once,
//! transient source failures (retries through the delay queues), a lost
//! message (the reaper), and a worker process killed mid-sync.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{DEADLINE, TestApp, TestEnv, WorkerProcess, counts, eventually};

#[tokio::test]
async fn a_running_job_is_cancelled_within_a_second() {
    // The default lease (30 s) means a heartbeat every 10 s, and this source
    // takes 3 s per entity, so a batch check would come late: only the
    // control message can stop the run in time.
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 100, "delay_ms_per_entity": 3000}),
            true,
        )
        .await;
    let job = app.run(connection, false).await;
    app.job_where(connection, job, "running", |job| job["status"] == "running")
        .await;
    let asked = Instant::now();
    let (status, body) = app.cancel(connection, job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelling");
    let done = app
        .job_where(connection, job, "cancelled", |job| {
            job["status"] == "cancelled"
        })
        .await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    eprintln!("cancel of a running job: cancelled {took:?} after the request");
    // What it committed is consistent with the cursor and the store.
    let inserted = done["entities_inserted"].as_i64().unwrap_or(-1);
    let body = app.connection(connection).await;
    assert_eq!(body["entities"]["total_entities"], inserted, "{body}");
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_then_fail_with_their_attempts() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| {
        settings.retry.max_attempts = 3;
        settings.retry.base_delay_ms = 400;
        settings.retry.max_delay_ms = 800;
    })
    .await;
    // A full sync each time, failing after 50 of its 100 entities.
    let connection = app
        .stub_connection(json!({"entity_count": 100, "fail_after": 50}), false)
        .await;
    let started = Instant::now();
    let job = app.run(connection, false).await;
    let done = app.finished_job(connection, job).await;
    let took = started.elapsed();

    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error_details"]["attempts"], 3, "{done}");
    assert_eq!(done["error_details"]["kind"], "transient", "{done}");
    assert_eq!(app.attempt(job).await, 3);
    // The first attempt stored 50; the retries found them unchanged.
    assert_eq!(counts(&done), [50, 0, 0, 0], "{done}");
    assert_eq!(
        app.workers[0].metric("syncway_job_retries_total").await,
        2.0
    );
    // Backoff, not a hot loop: at least half of 400 ms, then of 800 ms.
    assert!(took >= Duration::from_millis(600), "took {took:?}");
    eprintln!("retries exhausted: 3 attempts, failed {took:?} after the trigger");
}

#[tokio::test]
async fn a_retried_job_resumes_from_committed_data_and_completes() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| {
        settings.retry.max_attempts = 5;
        settings.retry.base_delay_ms = 100;
        settings.retry.max_delay_ms = 200;
    })
    .await;
    // Incremental: each attempt reads on from the committed cursor and
    // fails after 40 entities; the third reads the last 20.
    let connection = app
        .stub_connection(json!({"entity_count": 100, "fail_after": 40}), true)
        .await;
    let job = app.run(connection, false).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [100, 0, 0, 0], "{done}");
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(app.attempt(job).await, 3);
    let body = app.connection(connection).await;
    assert_eq!(body["entities"]["total_entities"], 100);
    assert_eq!(body["schedule"]["cursor_value"], 99);
}

#[tokio::test]
async fn a_pending_job_whose_message_was_lost_is_requeued_by_the_reaper() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let connection = app
        .stub_connection(json!({"entity_count": 10}), false)
        .await;
    let job = app.run(connection, false).await;
    // The relay publishes it (to the manual-runs queue: it was triggered
    // through the API); then the queue loses it.
    let broker = app.env.broker().await;
    let queue = broker.topology().manual_queue();
    eventually(
        "the message to be queued",
        Duration::from_secs(10),
        || async { (broker.queue_depth(&queue).await.ok().flatten() == Some(1)).then_some(()) },
    )
    .await;
    assert_eq!(broker.purge(&queue).await.ok(), Some(1));
    broker.close().await;

    let lost = Instant::now();
    app.add_worker(|settings| {
        settings.worker.reap_interval_seconds = 1;
        settings.worker.requeue_after_seconds = 1;
    })
    .await;
    let done = app.finished_job(connection, job).await;
    eprintln!(
        "lost message: job completed {:?} after a worker (reaper every 1 s) started",
        lost.elapsed()
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [10, 0, 0, 0]);
    assert_eq!(app.attempt(job).await, 1);
}

/// A deep backlog waits longer than `requeue_after` with its messages in
/// the queue: the reaper sees as many messages as pending jobs and leaves
/// them alone (it used to re-enqueue each one every `requeue_after`).
#[tokio::test]
async fn a_healthy_backlog_is_not_re_enqueued_however_long_it_waits() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // One slot, taken by a long job: the others wait in the queue.
    let long = app
        .stub_connection(
            json!({"entity_count": 400, "delay_ms_per_entity": 10}),
            false,
        )
        .await;
    app.add_worker(|settings| {
        settings.worker.concurrency = 1;
        settings.worker.reap_interval_seconds = 1;
        settings.worker.requeue_after_seconds = 1;
    })
    .await;
    let long_job = app.run(long, false).await;
    app.running_with_data(long, long_job).await;
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let connection = app
            .stub_connection(json!({"entity_count": 10}), false)
            .await;
        waiting.push((connection, app.run(connection, false).await));
    }
    // Three passes after they have all waited requeue_after.
    let worker = &app.workers[0];
    let db = app.db().await;
    eventually(
        "the backlog waits longer than requeue_after",
        DEADLINE,
        || async {
            let old: i64 = db
                .query_one(
                    "SELECT count(*) FROM sync_jobs
                 WHERE status = 'pending' AND created_at < now() - interval '1 second'",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (old == 4).then_some(())
        },
    )
    .await;
    let passes = worker.metric("syncway_worker_reaper_passes_total").await;
    worker
        .wait_for_metric("syncway_worker_reaper_passes_total", passes + 3.0)
        .await;
    let requeued: i64 = db
        .query_one(
            "SELECT count(*) FROM sync_jobs WHERE requeued_at IS NOT NULL",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .expect("requeued jobs");
    assert_eq!(requeued, 0);
    assert_eq!(
        worker
            .metric("syncway_worker_reaped_total{action=\"requeued\"}")
            .await,
        0.0
    );
    // The slot frees: each waiting job runs once, from its one message.
    assert_eq!(
        app.finished_job(long, long_job).await["status"],
        "completed"
    );
    for (connection, job) in &waiting {
        let done = app.finished_job(*connection, *job).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(app.attempt(*job).await, 1);
    }
    assert_eq!(
        worker
            .metric("syncway_worker_duplicate_deliveries_total")
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_worker_killed_mid_sync_is_taken_over_and_the_job_completes_once() {
    const LEASE: u64 = 2;
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // Four seconds of data in small batches; a full sync.
    let connection = app
        .stub_connection(
            json!({"entity_count": 2000, "delay_ms_per_entity": 2}),
            false,
        )
        .await;
    let mut doomed = WorkerProcess::start(&app.env, LEASE, &[]);
    let job = app.run(connection, false).await;
    let before = app.running_with_data(connection, job).await;
    app.add_worker(|settings| {
        settings.worker.lease_seconds = LEASE;
        settings.worker.reap_interval_seconds = 1;
        settings.retry.max_attempts = 5;
    })
    .await;
    doomed.kill();
    let killed = Instant::now();
    eventually("another worker to take the job over", DEADLINE, || async {
        (app.attempt(job).await == 2).then_some(())
    })
    .await;
    let takeover = killed.elapsed();

    let done = app.finished_job(connection, job).await;
    let recovery = killed.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    // Every entity counted once, across both workers' commits.
    assert_eq!(counts(&done), [2000, 0, 0, 0], "{done}");
    let body = app.connection(connection).await;
    assert_eq!(body["entities"]["total_entities"], 2000);
    // Taken over exactly once, after the dead worker's lease expired.
    assert_eq!(app.attempt(job).await, 2);
    assert!(
        before["entities_inserted"].as_i64().unwrap_or(0) > 0,
        "{before}"
    );
    eprintln!(
        "kill -9 mid-sync: taken over {takeover:?} and completed {recovery:?} after the kill"
    );
}

#[tokio::test]
async fn credential_failures_are_not_retried() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| {
        settings.retry.max_attempts = 5;
        settings.retry.base_delay_ms = 100;
    })
    .await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 100, "fail_after": 10, "fail_kind": "credentials"}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error_category"].is_string(), "{done}");
    assert_eq!(app.attempt(job).await, 1);
    assert_eq!(
        app.workers[0].metric("syncway_job_retries_total").await,
        0.0
    );
}

#[tokio::test]
async fn a_job_waiting_to_retry_is_cancelled_at_once() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| {
        settings.retry.max_attempts = 3;
        settings.retry.base_delay_ms = 60_000;
        settings.retry.max_delay_ms = 60_000;
    })
    .await;
    let connection = app
        .stub_connection(json!({"entity_count": 100, "fail_after": 30}), true)
        .await;
    let job = app.run(connection, false).await;
    let waiting = app
        .job_where(connection, job, "waiting to retry", |job| {
            job["status"] == "running"
                && job["error_details"]["next_attempt_in_seconds"].is_number()
        })
        .await;
    assert_eq!(waiting["error_details"]["attempts"], 1, "{waiting}");
    assert!(waiting["error"].is_string(), "{waiting}");
    // No worker holds it: it ends at once, keeping what the attempt committed.
    let (status, body) = app.cancel(connection, job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(counts(&body), [30, 0, 0, 0], "{body}");
    assert_eq!(
        app.connection(connection).await["schedule"]["cursor_value"],
        29
    );
}

#[tokio::test]
async fn a_cancelling_job_whose_worker_was_killed_ends_cancelled() {
    const LEASE: u64 = 2;
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 2000, "delay_ms_per_entity": 2}),
            true,
        )
        .await;
    let mut doomed = WorkerProcess::start(&app.env, LEASE, &[]);
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    doomed.kill();
    let (status, body) = app.cancel(connection, job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelling");
    // Nobody runs it any more; a reaper ends it once the lease has expired.
    app.add_worker(|settings| {
        settings.worker.lease_seconds = LEASE;
        settings.worker.reap_interval_seconds = 1;
    })
    .await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let inserted = done["entities_inserted"].as_i64().unwrap_or(-1);
    let body = app.connection(connection).await;
    assert_eq!(body["entities"]["total_entities"], inserted, "{body}");
    assert_eq!(body["schedule"]["cursor_value"], inserted - 1, "{body}");
}
