//! The `s3` connector against a local S3-compatible server (moto), with
//! 127.0.0.1 allowed as an operator would allow an internal store.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::s3::S3Server;
use crate::harness::{TestApp, TestEnv, counts, sync_killed_mid_way};

fn credentials() -> Value {
    json!({"access_key_id": "test-key", "secret_access_key": "test-secret"})
}

async fn stored_ids(app: &TestApp, connection: Uuid) -> Vec<String> {
    app.db()
        .await
        .query(
            "SELECT entity_id FROM entities WHERE source_connection_id = $1
             ORDER BY entity_id COLLATE \"C\"",
            &[&connection],
        )
        .await
        .expect("stored ids")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn payload(app: &TestApp, connection: Uuid, id: &str) -> Value {
    app.db()
        .await
        .query_one(
            "SELECT payload FROM entities WHERE source_connection_id = $1 AND entity_id = $2",
            &[&connection, &id],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or_else(|error| panic!("entity {id}: {error}"))
}

#[tokio::test]
async fn a_bucket_of_more_than_one_listing_page_syncs_fully_then_incrementally() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let server = S3Server::start().await;
    let bucket = server.create_bucket("docs").await;
    // 1,050 objects under the prefix: two listing pages.
    server
        .put_many(&bucket, (0..1050).map(|i| format!("team/notes/{i:04}.txt")))
        .await;
    server
        .put(
            &bucket,
            "team/readme.md",
            b"# Hello\n".to_vec(),
            "text/markdown",
        )
        .await;
    server
        .put(
            &bucket,
            "team/logo.png",
            vec![0x89, b'P', b'N', b'G', 0xff],
            "image/png",
        )
        .await;
    server
        .put(&bucket, "team/big.txt", vec![b'a'; 5000], "text/plain")
        .await;
    server
        .put(
            &bucket,
            "other/outside.txt",
            b"not read".to_vec(),
            "text/plain",
        )
        .await;
    let connection = app
        .connection_of(
            "s3",
            json!({"bucket": "docs", "prefix": "team/", "endpoint": server.endpoint(),
                   "force_path_style": true, "max_content_bytes": 4096, "batch_size": 100}),
            credentials(),
            true,
        )
        .await;

    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [1053, 0, 0, 0], "{job}");
    let ids = stored_ids(&app, connection).await;
    assert_eq!(ids.len(), 1053);
    assert!(ids.iter().all(|id| id.starts_with("team/")), "{ids:?}");
    let readme = payload(&app, connection, "team/readme.md").await;
    assert_eq!(readme["content"], "# Hello\n", "{readme}");
    assert_eq!(readme["content_type"], "text/markdown", "{readme}");
    assert_eq!(readme["size"], 8, "{readme}");
    assert!(
        readme["etag"].as_str().is_some_and(|etag| etag.len() == 32),
        "{readme}"
    );
    assert!(
        readme["last_modified"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{readme}"
    );
    let logo = payload(&app, connection, "team/logo.png").await;
    assert_eq!(
        (logo["content"].clone(), logo["content_omitted"].clone()),
        (Value::Null, json!("not_utf8"))
    );
    let big = payload(&app, connection, "team/big.txt").await;
    assert_eq!(
        (big["content"].clone(), big["content_omitted"].clone()),
        (Value::Null, json!("too_large"))
    );
    assert_eq!(big["size"], 5000);

    // Nothing changed: nothing counted.
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "{job}");

    // One object rewritten, one added: the incremental run reads those.
    server
        .put(
            &bucket,
            "team/readme.md",
            b"# Hello again\n".to_vec(),
            "text/markdown",
        )
        .await;
    server
        .put(&bucket, "team/new.md", b"new".to_vec(), "text/markdown")
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [1, 1, 0, 0], "{job}");
    assert_eq!(
        payload(&app, connection, "team/readme.md").await["content"],
        "# Hello again\n"
    );

    // Deleted objects: found by the next full sync (the listing's diff).
    server.delete(&bucket, "team/notes/0001.txt").await;
    server.delete(&bucket, "team/new.md").await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "{job}");
    let job = app.sync(connection, true).await;
    assert_eq!(counts(&job), [0, 0, 2, 0], "{job}");
    assert_eq!(stored_ids(&app, connection).await.len(), 1052);

    // A glob narrows it to matching keys under the prefix.
    let markdown = app
        .connection_of(
            "s3",
            json!({"bucket": "docs", "prefix": "team/", "glob": "*.md",
                   "endpoint": server.endpoint(), "force_path_style": true}),
            credentials(),
            false,
        )
        .await;
    let job = app.sync(markdown, false).await;
    assert_eq!(counts(&job), [1, 0, 0, 0], "{job}");
}

#[tokio::test]
async fn a_refused_access_key_and_a_missing_bucket_fail_clearly() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    // s3rver checks every presigned request's access key (not its V4
    // signature's value): its own key passes, another is refused.
    let checking = S3Server::start_checking_credentials("docs").await;
    let config =
        json!({"bucket": "docs", "endpoint": checking.endpoint(), "force_path_style": true});
    let right = app
        .connection_of(
            "s3",
            config.clone(),
            json!({"access_key_id": "S3RVER", "secret_access_key": "S3RVER"}),
            false,
        )
        .await;
    let job = app.sync(right, false).await;
    assert_eq!(
        (job["status"].as_str(), counts(&job)),
        (Some("completed"), [0, 0, 0, 0]),
        "{job}"
    );
    {
        let (key, secret) = ("nobody", "not-the-secret");
        let refused = app
            .connection_of(
                "s3",
                config.clone(),
                json!({"access_key_id": key, "secret_access_key": secret}),
                false,
            )
            .await;
        let job = app.sync(refused, false).await;
        assert_eq!(
            (job["status"].as_str(), job["error_category"].as_str()),
            (Some("failed"), Some("api_key_invalid")),
            "{job}"
        );
        assert_eq!(app.connection(refused).await["status"], "needs_reauth");
        assert!(!job.to_string().contains("not-the-secret"), "{job}");
    }

    let server = S3Server::start().await;
    let missing = app
        .connection_of(
            "s3",
            json!({"bucket": "nowhere", "endpoint": server.endpoint(), "force_path_style": true}),
            credentials(),
            false,
        )
        .await;
    let job = app.sync(missing, false).await;
    assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("NoSuchBucket")),
        "{job}"
    );
}

#[tokio::test]
async fn a_sync_whose_worker_is_killed_resumes_without_counting_twice() {
    let app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    let server = S3Server::start().await;
    let bucket = server.create_bucket("many").await;
    server
        .put_many(&bucket, (0..400).map(|i| format!("k/{i:04}")))
        .await;
    let connection = app
        .connection_of(
            "s3",
            json!({"bucket": "many", "endpoint": server.endpoint(), "force_path_style": true,
                   "batch_size": 4}),
            credentials(),
            false,
        )
        .await;
    let (killed, done) = sync_killed_mid_way(&app, connection, false).await;
    assert!(
        killed["entities_inserted"]
            .as_i64()
            .is_some_and(|n| (1..400).contains(&n)),
        "{killed}"
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [400, 0, 0, 0], "{done}");
    assert_eq!(stored_ids(&app, connection).await.len(), 400);
}
