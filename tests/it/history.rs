//! History (CONTRACT.md §9): a job's timeline tells what happened to it in
//! order, the audit log records every change once with no secret in it,
//! and retention removes what is past its rules and nothing the engine or
//! a client still needs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, TestEnv, WorkerProcess, eventually, id_of};

/// Every item of a job's timeline, read `page` at a time.
async fn timeline(app: &TestApp, connection: Uuid, job: Uuid, page: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let path =
            format!("/source-connections/{connection}/jobs/{job}/timeline?limit={page}{after}");
        let (status, body) = app.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        items.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return items,
        }
    }
}

fn kinds(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|item| item["kind"].as_str())
        .collect()
}

fn first<'a>(items: &'a [Value], kind: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {items:?}"))
}

#[tokio::test]
async fn a_retried_taken_over_and_cancelled_job_tells_exactly_that_in_order() {
    const LEASE: u64 = 2;
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // Each attempt reads on from the committed cursor and fails after 40
    // entities, two seconds in.
    let connection = app
        .stub_connection(
            json!({"entity_count": 2000, "fail_after": 40, "delay_ms_per_entity": 50}),
            true,
        )
        .await;
    let retries = [
        ("SYNCWAY_RETRY__MAX_ATTEMPTS", "5".to_owned()),
        ("SYNCWAY_RETRY__BASE_DELAY_MS", "100".to_owned()),
        ("SYNCWAY_RETRY__MAX_DELAY_MS", "200".to_owned()),
    ];
    let mut first_worker = WorkerProcess::start(&app.env, LEASE, &retries);
    let job = app.run(connection, false).await;
    // The first attempt failed and was retried; the second has committed.
    eventually("the second attempt to commit data", DEADLINE, || async {
        let inserted = app.job(connection, job).await["entities_inserted"]
            .as_i64()
            .unwrap_or(0);
        (app.attempt(job).await == 2 && inserted > 40).then_some(())
    })
    .await;
    first_worker.kill();
    app.add_worker(|settings| {
        settings.worker.lease_seconds = LEASE;
        settings.worker.reap_interval_seconds = 1;
        settings.retry.max_attempts = 5;
    })
    .await;
    eventually("another worker to take the job over", DEADLINE, || async {
        (app.attempt(job).await == 3).then_some(())
    })
    .await;
    let (status, body) = app.cancel(connection, job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "cancelled", "{done}");

    let items = timeline(&app, connection, job, 2).await;
    // One page holds the same items in the same order.
    assert_eq!(items, timeline(&app, connection, job, 1000).await);
    let told: Vec<&str> = kinds(&items)
        .into_iter()
        // Progress is coalesced by time, and whether the reaper noticed
        // the lost lease before the redelivered message was claimed
        // depends on timing; neither changes the story.
        .filter(|kind| !matches!(*kind, "progress" | "lease_lost"))
        .collect();
    assert_eq!(
        told,
        [
            "created",
            "claimed",
            "retry_scheduled",
            "claimed",
            "taken_over",
            "claimed",
            "cancel_requested",
            "cancelled"
        ],
        "{items:#?}"
    );
    let claims: Vec<&Value> = items.iter().filter(|i| i["kind"] == "claimed").collect();
    let attempts: Vec<i64> = claims
        .iter()
        .filter_map(|c| c["attempt"].as_i64())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let (a, b) = (&claims[0]["worker_id"], &claims[2]["worker_id"]);
    assert!(a.is_string() && b.is_string() && a != b, "{items:#?}");
    assert_eq!(claims[1]["worker_id"], *a);
    let taken_over = first(&items, "taken_over");
    assert_eq!(taken_over["details"]["from_worker"], *a);
    assert_eq!(taken_over["worker_id"], *b);
    let retry = first(&items, "retry_scheduled");
    assert!(
        retry["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed after 40 entities")),
        "{retry}"
    );
    assert!(retry["details"]["retry_at"].is_string(), "{retry}");
    assert_eq!(first(&items, "created")["details"]["trigger"], "api");
    // The cancel names the key that asked for it.
    let (_, keys) = app.call("GET", "/api-keys", None).await;
    assert_eq!(
        first(&items, "cancel_requested")["details"]["key_id"],
        keys[0]["id"]
    );
    // Oldest first.
    let times: Vec<&str> = items.iter().filter_map(|i| i["at"].as_str()).collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> = times
        .iter()
        .map(|t| t.parse().expect("an RFC 3339 time"))
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[tokio::test]
async fn a_completed_job_s_timeline_ends_with_its_counts_and_other_tenants_get_404() {
    let app = TestApp::spawn().await;
    let connection = app.stub_connection(json!({"entity_count": 30}), true).await;
    let done = app.sync(connection, false).await;
    let job = id_of(&done);
    let items = timeline(&app, connection, job, 100).await;
    assert_eq!(kinds(&items).first(), Some(&"created"));
    let last = items.last().expect("items");
    assert_eq!(last["kind"], "completed");
    assert_eq!(last["details"]["inserted"], 30);
    // Another organization's key, an unknown job, a job under another
    // connection: 404 alike.
    let other = format!("sw_other_{}", Uuid::new_v4().simple());
    syncway_store::api_keys::ensure_organization_with_key(&app.db().await, "other", &other)
        .await
        .expect("another organization");
    let path = format!("/source-connections/{connection}/jobs/{job}/timeline");
    let (status, _) = app.call_with_key("GET", &path, None, Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown = format!(
        "/source-connections/{connection}/jobs/{}/timeline",
        Uuid::new_v4()
    );
    assert_eq!(
        app.call("GET", &unknown, None).await.0,
        StatusCode::NOT_FOUND
    );
    let elsewhere = app.stub_connection(json!({}), true).await;
    let moved = format!("/source-connections/{elsewhere}/jobs/{job}/timeline");
    assert_eq!(app.call("GET", &moved, None).await.0, StatusCode::NOT_FOUND);
}
