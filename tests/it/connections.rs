//! Source connections as resources: credentials sealed and never returned,
//! listing with status and counts, deletion with everything it owns, and
//! their stored entities page by page.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, eventually};

#[tokio::test]
async fn credentials_are_stored_encrypted_and_never_returned() {
    let app = TestApp::spawn().await;
    let collection = app.create_collection().await;
    let (status, body) = app
        .call(
            "POST",
            "/source-connections",
            Some(json!({
                "short_name": "stub",
                "readable_collection_id": collection,
                "authentication": {"credentials": {"password": "hunter2-secret"}},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.to_string().contains("hunter2-secret"));
    let connection = crate::harness::id_of(&body);
    let row = app
        .db()
        .await
        .query_one(
            "SELECT credentials FROM source_connections WHERE id = $1",
            &[&connection],
        )
        .await;
    let sealed: Vec<u8> = row.map(|row| row.get(0)).unwrap_or_default();
    assert!(!sealed.is_empty());
    assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
    // The worker can open them: the sync runs.
    let job = app.run(connection, false).await;
    assert_eq!(
        app.finished_job(connection, job).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn deleting_a_connection_answers_at_once_and_its_rows_go_in_the_background() {
    let app = TestApp::spawn().await;
    let connection = app.stub_connection(json!({"entity_count": 20}), true).await;
    let job = app.run(connection, false).await;
    app.finished_job(connection, job).await;
    let (status, body) = app
        .call("DELETE", &format!("/source-connections/{connection}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], connection.to_string());
    assert_eq!(body["entities"]["total_entities"], 20);
    let (status, _) = app
        .call("GET", &format!("/source-connections/{connection}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let db = app.db().await;
    let left = |table: &'static str| {
        let db = &db;
        async move {
            db.query_one(
                &format!("SELECT count(*) FROM {table} WHERE source_connection_id = $1"),
                &[&connection],
            )
            .await
            .map(|row| row.get::<_, i64>(0))
            .expect("counting what is left")
        }
    };
    // The cursor goes with the connection; the rest in the background.
    assert_eq!(left("cursors").await, 0);
    eventually(
        "the retention loop to remove the rest",
        DEADLINE,
        || async { (left("entities").await == 0 && left("sync_jobs").await == 0).then_some(()) },
    )
    .await;
    let worker = &app.workers[0];
    worker
        .wait_for_metric("syncway_retention_removed_total{table=\"entities\"}", 20.0)
        .await;
    assert_eq!(
        worker
            .metric("syncway_retention_removed_total{table=\"sync_jobs\"}")
            .await,
        1.0
    );
    // Its job's id stays a while, so that a late message for it is dropped.
    let tombstone = db
        .query_opt("SELECT 1 FROM deleted_jobs WHERE job_id = $1", &[&job])
        .await
        .expect("reading tombstones");
    assert!(tombstone.is_some());
    let timeline: i64 = db
        .query_one(
            "SELECT count(*) FROM job_timeline WHERE job_id = $1",
            &[&job],
        )
        .await
        .map(|row| row.get(0))
        .expect("counting timeline items");
    assert_eq!(timeline, 0);
}

#[tokio::test]
async fn connections_are_listed_with_their_status_and_counts() {
    let app = TestApp::spawn().await;
    let first = app.stub_connection(json!({"entity_count": 3}), false).await;
    let second = app.stub_connection(json!({"entity_count": 4}), false).await;
    let job = app.run(first, false).await;
    app.finished_job(first, job).await;
    let (status, list) = app.call("GET", "/source-connections", None).await;
    assert_eq!(status, StatusCode::OK);
    let items = list.as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], first.to_string());
    assert_eq!(items[0]["entity_count"], 3);
    assert_eq!(items[0]["status"], "active");
    assert_eq!(items[0]["is_authenticated"], true);
    assert_eq!(items[0]["auth_method"], "direct");
    assert_eq!(items[1]["id"], second.to_string());
    let collection = app.connection(second).await["readable_collection_id"].clone();
    let (_, only) = app
        .call(
            "GET",
            &format!(
                "/source-connections?collection={}",
                collection.as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    assert_eq!(only[0]["id"], second.to_string());
    let (_, page) = app
        .call("GET", "/source-connections?skip=1&limit=1", None)
        .await;
    assert_eq!(page[0]["id"], second.to_string());
}

/// Several jobs' batches in one statement: each is counted, written and
/// fenced on its own.
#[tokio::test]
async fn stored_entities_are_listed_page_by_page() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 25, "payload_bytes": 16}), false)
        .await;
    let job = app.run(connection, false).await;
    assert_eq!(
        app.finished_job(connection, job).await["status"],
        "completed"
    );

    let path = format!("/source-connections/{connection}/entities");
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &after {
            Some(after) => format!("?limit=10&after={after}"),
            None => "?limit=10".to_string(),
        };
        let (status, body) = app.call("GET", &format!("{path}{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            let payload = &item["payload"];
            assert_eq!(
                item["content_hash"].as_str(),
                Some(hex::encode(syncway_model::content_hash(payload)).as_str())
            );
            assert!(item["updated_at"].is_string(), "{item}");
            seen.push(item["entity_id"].as_str().unwrap_or_default().to_string());
        }
        match body["next"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), 10);
                after = Some(next.to_string());
            }
            None => {
                assert!(body["next"].is_null(), "{body}");
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = (0..25).map(|i| format!("stub-{i}")).collect();
    expected.sort();
    // Entity id order, each once.
    assert_eq!(seen, expected);

    for bad in ["?limit=0", "?limit=1001", "?after=zz", "?after=ff"] {
        let (status, body) = app.call("GET", &format!("{path}{bad}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (status, _) = app
        .call(
            "GET",
            &format!("/source-connections/{}/entities", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Waits until `n` sessions of the test's database wait on a lock.
async fn sessions_waiting_on_a_lock(app: &TestApp, n: i64) {
    let db = app.db().await;
    crate::harness::eventually(
        "PATCHes waiting on the row",
        crate::harness::DEADLINE,
        || {
            let db = &db;
            async move {
                let row = db
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .ok()?;
                (row.get::<_, i64>(0) >= n).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn concurrent_patches_of_one_connection_lose_no_update() {
    let app = TestApp::spawn_with(0).await;
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    // The test holds the row while two PATCHes of different fields arrive:
    // both wait on it, and each then applies its field to the row as the
    // other left it.
    let mut holder = app.db().await;
    let holding = holder.transaction().await.expect("a transaction");
    holding
        .execute(
            "SELECT 1 FROM source_connections WHERE id = $1 FOR UPDATE",
            &[&connection],
        )
        .await
        .expect("the row locked");
    let path = format!("/source-connections/{connection}");
    let by_name = app.call("PATCH", &path, Some(json!({"name": "renamed"})));
    let by_description = app.call("PATCH", &path, Some(json!({"description": "described"})));
    let release = async {
        sessions_waiting_on_a_lock(&app, 2).await;
        holding.commit().await.expect("the row released");
    };
    let ((named, _), (described, _), ()) = tokio::join!(by_name, by_description, release);
    assert_eq!(named, StatusCode::OK);
    assert_eq!(described, StatusCode::OK);
    let body = app.connection(connection).await;
    assert_eq!(body["name"], "renamed", "{body}");
    assert_eq!(body["description"], "described", "{body}");
}

#[tokio::test]
async fn a_patch_checks_its_hosts_before_it_takes_the_row() {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let name = name.trim().to_owned();
    let mut env = crate::harness::TestEnv::new().await;
    env.allow_hosts = vec![name.clone()];
    let app = TestApp::spawn_on(env, 0).await;
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("http://{name}:9/items")}),
            None,
            false,
        )
        .await;
    let mut holder = app.db().await;
    let holding = holder.transaction().await.expect("a transaction");
    holding
        .execute(
            "SELECT 1 FROM source_connections WHERE id = $1 FOR UPDATE",
            &[&connection],
        )
        .await
        .expect("the row locked");
    // A host name that resolves to a denied address is refused while the
    // row is still held: the look-up and the check come before the lock.
    let (status, body) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"config": {"url": "http://localhost:9/items"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "config", "url"]),
        "{body}"
    );
    holding.rollback().await.expect("the row released");
}
