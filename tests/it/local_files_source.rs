//! The `local_files` connector against a real directory tree.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv, counts, id_of};

/// A directory of the test's own, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("syncway-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Tree(path)
    }

    /// Writes `content` to `relative`, modified `age` ago.
    fn write(&self, relative: &str, content: &[u8], age: Duration) {
        let path = self.0.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stored entity ids, sorted, with their payloads.
async fn stored(app: &TestApp, connection: Uuid) -> Vec<(String, Value)> {
    app.pairs(
        "SELECT entity_id, payload FROM entities WHERE source_connection_id = $1
         ORDER BY entity_id COLLATE \"C\"",
        &[&connection],
    )
    .await
}

#[tokio::test]
async fn files_sync_fully_then_incrementally_by_modification_time() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_temp_files(), 1).await;
    let tree = Tree::new();
    let hour = Duration::from_secs(3600);
    tree.write("a.md", b"alpha", hour);
    tree.write("b.md", b"beta", hour);
    tree.write("sub/c.md", "caf\u{e9} ".repeat(10).as_bytes(), hour);
    tree.write("notes.txt", b"not matched", hour);
    tree.write("raw.md", &[0xff, 0xfe, 0x00, 0x01], hour);
    let (status, body) = app
        .try_connection(
            "local_files",
            json!({"path": tree.path().to_string_lossy(), "glob": "**/*.md",
               "max_content_bytes": 16, "batch_size": 2}),
            None,
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = id_of(&body);

    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [4, 0, 0, 0], "{job}");
    let entities = stored(&app, connection).await;
    let ids: Vec<&str> = entities.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a.md", "b.md", "raw.md", "sub/c.md"]);
    let payload = |id: &str| {
        entities
            .iter()
            .find(|(entity, _)| entity == id)
            .map(|(_, payload)| payload.clone())
            .unwrap_or_default()
    };
    assert_eq!(payload("a.md")["content"], "alpha");
    assert_eq!(payload("a.md")["size"], 5);
    assert_eq!(payload("a.md")["truncated"], false);
    // Cut at 16 bytes, on a character boundary.
    assert_eq!(payload("sub/c.md")["content"], "caf\u{e9} caf\u{e9} caf");
    assert_eq!(payload("sub/c.md")["truncated"], true);
    assert!(payload("raw.md")["content"].is_null());
    // The cursor is the newest modification time.
    let cursor = app.connection(connection).await["schedule"]["cursor_value"].clone();
    assert!(
        cursor.as_str().is_some_and(|c| c.ends_with('Z')),
        "{cursor}"
    );

    // Nothing changed: nothing counted, incremental or full.
    for force in [false, true] {
        let job = app.sync(connection, force).await;
        assert_eq!(counts(&job), [0, 0, 0, 0], "force_full_sync={force}: {job}");
    }

    // One file changed, one added, one deleted.
    tree.write("b.md", b"beta, edited", Duration::ZERO);
    tree.write("d.md", b"delta", Duration::ZERO);
    std::fs::remove_file(tree.path().join("a.md")).unwrap();
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [1, 1, 0, 0], "{job}");
    // The deletion needs a full sync.
    let job = app.sync(connection, true).await;
    assert_eq!(counts(&job), [0, 0, 1, 0], "{job}");
    let ids: Vec<String> = stored(&app, connection)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["b.md", "d.md", "raw.md", "sub/c.md"]);
}

#[tokio::test]
async fn a_missing_directory_fails_the_job_and_a_bad_glob_is_refused() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_temp_files(), 1).await;
    let missing = std::env::temp_dir().join(format!("syncway-missing-{}", Uuid::new_v4()));
    let (status, body) = app
        .try_connection(
            "local_files",
            json!({"path": missing.to_string_lossy()}),
            None,
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job = app.sync(id_of(&body), false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|error| error.contains("does not exist")),
        "{job}"
    );

    let app = TestApp::with_api(TestEnv::new().await.allowing_temp_files(), |_| {}).await;
    let (status, body) = app
        .try_connection(
            "local_files",
            json!({"path": "/tmp", "glob": "a[b"}),
            None,
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("glob"), "{body}");
}

/// A sync stopped between batches and run again: every file stored once,
/// nothing counted twice.
#[tokio::test]
async fn a_sync_stopped_between_batches_resumes_without_counting_twice() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_temp_files(), |_| {}).await;
    app.add_worker(|settings| settings.worker.shutdown_grace_seconds = 0)
        .await;
    let tree = Tree::new();
    // One file per batch, each its own commit: the sync takes a while.
    for i in 0..500 {
        tree.write(
            &format!("f{i:03}.txt"),
            format!("file {i}").as_bytes(),
            Duration::from_secs(600),
        );
    }
    let (status, body) = app
        .try_connection(
            "local_files",
            json!({"path": tree.path().to_string_lossy(), "batch_size": 1}),
            None,
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = id_of(&body);
    let job = app.run(connection, true).await;
    app.running_with_data(connection, job).await;
    let stopped = app.stop_first_worker(connection, job).await;
    let committed = counts(&stopped)[0];
    assert!(
        stopped["status"] == "running" && (1..500).contains(&committed),
        "{stopped}"
    );

    app.add_worker(|_| {}).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [500, 0, 0, 0], "{done}");
    assert_eq!(stored(&app, connection).await.len(), 500);
    // Resumed by another worker; a handback does not count as an attempt.
    assert_eq!(app.attempt(job).await, 1);
}
