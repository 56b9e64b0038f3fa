//! Cancelling jobs, and stopping workers (SIGTERM) with jobs running.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, TestEnv};

#[tokio::test]
async fn a_pending_job_is_cancelled_at_once_and_its_message_dropped() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let connection = app.stub_connection(json!({"entity_count": 5}), false).await;
    let job = app.run(connection, false).await;
    let (status, body) = app.cancel(connection, job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");

    app.add_worker(|_| {}).await;
    let worker = &app.workers[0];
    worker
        .wait_for_metric("syncway_worker_duplicate_deliveries_total", 1.0)
        .await;
    let after = app.job(connection, job).await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["entities_inserted"], 0);
    assert!(after["started_at"].is_null());
}

#[tokio::test]
async fn a_running_job_is_cancelled_with_its_committed_data_consistent() {
    let app = TestApp::spawn().await;
    // Ten seconds of data in batches of 40.
    let connection = app
        .stub_connection(
            json!({"entity_count": 2000, "delay_ms_per_entity": 5}),
            true,
        )
        .await;
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    let (status, body) = app.cancel(connection, job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelling");
    let (status, _) = app.cancel(connection, job).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "cancelling is not cancellable again"
    );

    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let inserted = done["entities_inserted"].as_i64().unwrap_or(-1);
    assert!((1..2000).contains(&inserted), "{done}");
    // The cursor covers exactly the committed entities.
    let body = app.connection(connection).await;
    assert_eq!(body["schedule"]["cursor_value"], inserted - 1);
    assert_eq!(body["entities"]["total_entities"], inserted);

    // The next incremental run picks up exactly the rest.
    let (status, _) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"config": {"entity_count": 2000}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let rest = app.run(connection, false).await;
    let rest = app.finished_job(connection, rest).await;
    assert_eq!(rest["entities_inserted"], 2000 - inserted);
}

#[tokio::test]
async fn sigterm_lets_a_running_job_finish_within_the_grace_period() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.worker.shutdown_grace_seconds = 30)
        .await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 200, "delay_ms_per_entity": 5}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    app.job_where(connection, job, "running", |job| job["status"] == "running")
        .await;
    let worker = app.workers.remove(0);
    worker.shutdown().await.unwrap();
    // When the worker has returned, the job is complete, not abandoned.
    let done = app.job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["entities_inserted"], 200);
}

#[tokio::test]
async fn sigterm_past_the_grace_period_hands_the_job_to_another_worker() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.worker.shutdown_grace_seconds = 0)
        .await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 1000, "delay_ms_per_entity": 5}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    let handed_back = app.stop_first_worker(connection, job).await;
    assert_eq!(handed_back["status"], "running");

    app.add_worker(|_| {}).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    // Resumed from committed data: every entity counted exactly once.
    assert_eq!(done["entities_inserted"], 1000, "{done}");
    // Taken over, but a handback is not a failed attempt: it does not count
    // against the retry limit.
    assert_eq!(app.attempt(job).await, 1);
}

#[tokio::test]
async fn the_test_databases_reject_every_illegal_status_change() {
    // The harness's guard (invariant 6, checked in every test): here it is
    // shown to bite.
    let app = TestApp::spawn().await;
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    let job_id = crate::harness::id_of(&job);
    let db = app.db().await;
    for (to, legal) in [
        ("running", false),
        ("pending", false),
        ("cancelling", false),
    ] {
        let changed = db
            .execute(
                "UPDATE sync_jobs SET status = $2 WHERE id = $1",
                &[&job_id, &to],
            )
            .await;
        assert_eq!(changed.is_ok(), legal, "completed -> {to}: {changed:?}");
        let error = changed.err().map(|e| format!("{e:?}")).unwrap_or_default();
        assert!(error.contains("illegal job status transition"), "{error}");
    }
    let inserted = db
        .execute(
            "INSERT INTO sync_jobs (id, source_connection_id, status) VALUES ($1, $2, 'running')",
            &[&uuid::Uuid::now_v7(), &connection],
        )
        .await;
    assert!(inserted.is_err(), "a job inserted as running");
}
