//! Source connections as resources: credentials sealed and never returned,
//! listing with status and counts, deletion with everything it owns, and
//! their stored entities page by page.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::harness::TestApp;

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
async fn deleting_a_connection_removes_its_jobs_cursor_and_entities() {
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
    for table in ["sync_jobs", "cursors", "entities"] {
        let left: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE source_connection_id = $1"),
                &[&connection],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(-1);
        assert_eq!(left, 0, "{table}");
    }
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
