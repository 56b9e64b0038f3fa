//! The stub connector's sync semantics: what incremental and full syncs
//! count, and what a failure mid-sync leaves behind.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, TestEnv, counts};

#[tokio::test]
async fn incremental_and_full_syncs_count_exactly_what_changed() {
    count_exactly_what_changed(&TestApp::spawn().await, 1).await;
}

/// The same with ten times the entities in batches of 300: most batches
/// are large (`jobs::commit_bulk`: new entities copied, the rest probed),
/// the last of each sync small.
#[tokio::test]
async fn large_batches_count_exactly_what_changed() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| {
        // A stub entity of 256 payload bytes counts as 356.
        settings.connectors.max_entity_bytes = 4096;
        settings.connectors.max_batch_bytes = 300 * 356;
    })
    .await;
    count_exactly_what_changed(&app, 10).await;
}

/// Incremental and full syncs of a continuous stub connection, with
/// `scale` times 100 entities to begin with.
async fn count_exactly_what_changed(app: &TestApp, scale: i64) {
    let connection = app
        .stub_connection(json!({"entity_count": 100 * scale}), true)
        .await;
    let path = format!("/source-connections/{connection}");
    let patch = |config: Value| {
        let path = path.clone();
        async move {
            let (status, body) = app
                .call("PATCH", &path, Some(json!({"config": config})))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    let sync = |full: bool| async move {
        let job = app.run(connection, full).await;
        counts(&app.finished_job(connection, job).await)
    };

    // First run of a continuous connection: no cursor yet, everything is new.
    assert_eq!(sync(false).await, [100 * scale, 0, 0, 0]);

    // Incremental: only the entities after the cursor are read.
    patch(json!({"entity_count": 150 * scale})).await;
    assert_eq!(sync(false).await, [50 * scale, 0, 0, 0]);
    assert_eq!(
        app.connection(connection).await["schedule"]["cursor_value"],
        150 * scale - 1
    );

    // Nothing new: an incremental run counts nothing.
    assert_eq!(sync(false).await, [0, 0, 0, 0]);

    // Forced full sync of unchanged data: every entity is unchanged.
    assert_eq!(sync(true).await, [0, 0, 0, 0]);

    // New content for every entity: a full sync counts them all updated.
    patch(json!({"entity_count": 150 * scale, "seed": 7})).await;
    assert_eq!(sync(true).await, [0, 150 * scale, 0, 0]);

    // The source shrank: a full sync deletes what it no longer has.
    patch(json!({"entity_count": 120 * scale, "seed": 7})).await;
    assert_eq!(sync(true).await, [0, 0, 30 * scale, 0]);
    assert_eq!(app.entity_count(connection).await, 120 * scale);
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        120 * scale
    );
}

#[tokio::test]
async fn a_non_continuous_connection_always_runs_full() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 40}), false)
        .await;
    let job = app.run(connection, false).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [40, 0, 0, 0]
    );
    // A full sync re-reads all 40; unchanged, so nothing is counted...
    let (status, _) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"config": {"entity_count": 30}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // ...and force_full_sync=false still deletes the 10 that are gone.
    let job = app.run(connection, false).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [0, 0, 10, 0]
    );
}

#[tokio::test]
async fn a_transient_source_failure_keeps_what_was_committed() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 3000, "fail_after": 1500}), true)
        .await;
    let job = app.run(connection, false).await;
    let failed = app.finished_job(connection, job).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("failed after 1500")),
        "{failed}"
    );
    assert_eq!(failed["error_details"]["kind"], "transient");
    assert!(failed["error_category"].is_null());
    assert!(failed["completed_at"].is_string());
    // The 1500 entities read before the failure are committed, and the
    // cursor covers exactly them.
    assert_eq!(counts(&failed), [1500, 0, 0, 0]);
    assert_eq!(app.entity_count(connection).await, 1500);
    let body = app.connection(connection).await;
    assert_eq!(body["schedule"]["cursor_value"], 1499);
    assert_eq!(body["status"], "error");
    assert_eq!(body["sync"]["failed_runs"], 1);
}

#[tokio::test]
async fn a_credential_failure_needs_reauthentication_before_the_next_run() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 10, "fail_after": 0, "fail_kind": "credentials"}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let failed = app.finished_job(connection, job).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_category"], "api_key_invalid");

    let body = app.connection(connection).await;
    assert_eq!(body["status"], "needs_reauth");
    assert_eq!(body["auth"]["authenticated"], false);
    assert_eq!(body["error_category"], "api_key_invalid");
    let (status, body) = app
        .call(
            "POST",
            &format!("/source-connections/{connection}/run"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("re-authentication"))
    );

    // New credentials (and a config that no longer fails) clear it.
    let (status, body) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"authentication": {"credentials": {"token": "new"}}, "config": {"entity_count": 10}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["auth"]["authenticated"], true);
    let job = app.run(connection, false).await;
    assert_eq!(
        app.finished_job(connection, job).await["status"],
        "completed"
    );
}
