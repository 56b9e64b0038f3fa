//! The `mysql` connector against a real MariaDB (or MySQL) server, in a
//! database of the test's own, with 127.0.0.1 allowed as an operator would
//! allow an internal database.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::mysql::MysqlDb;
use crate::harness::{TestApp, TestEnv, counts, sync_killed_mid_way};

/// (entity id, stored payload's name) of every stored entity, by id.
async fn stored(app: &TestApp, connection: Uuid) -> Vec<(String, Value)> {
    app.pairs(
        "SELECT entity_id, payload->'name' FROM entities WHERE source_connection_id = $1
         ORDER BY entity_id::int",
        &[&connection],
    )
    .await
}

/// (id, name) of the live source rows, by id.
async fn live_rows(db: &MysqlDb) -> Vec<(String, Value)> {
    use mysql_async::prelude::Queryable;
    let mut conn = db.conn().await;
    let rows: Vec<(i64, String)> = conn
        .query("SELECT id, name FROM src_items WHERE NOT deleted ORDER BY id")
        .await
        .expect("reading the source rows");
    rows.into_iter()
        .map(|(id, name)| (id.to_string(), Value::String(name)))
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
        .expect("a stored entity")
}

const TABLE: &str = "CREATE TABLE src_items (
    id INT PRIMARY KEY, name VARCHAR(40) NOT NULL,
    price DECIMAL(30,10) NOT NULL DEFAULT 0,
    updated_at DATETIME(6) NOT NULL,
    seen_at TIMESTAMP(3) NULL,
    photo BLOB, flags BIT(3), doc JSON, note TEXT,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    INDEX (updated_at, id))";

#[tokio::test]
async fn full_incremental_and_forced_full_syncs_count_exactly_and_map_types_faithfully() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let db = MysqlDb::new().await;
    db.sql(TABLE).await;
    db.sql(
        "INSERT INTO src_items (id, name, updated_at)
         SELECT seq, CONCAT('item ', seq), NOW(6) - INTERVAL 1 HOUR + INTERVAL seq SECOND
         FROM seq_1_to_25",
    )
    .await;
    db.sql(
        r#"UPDATE src_items SET price = 12345678901234567890.0123456789,
               seen_at = '2026-12-06 05:04:03.250', photo = x'0001FF', flags = b'101',
               doc = '{"tags": ["a", "b"], "n": 1}', note = 'naïve ✓'
           WHERE id = 7"#,
    )
    .await;
    let connection = app
        .connection_of(
            "mysql",
            json!({"table": "src_items", "cursor_column": "updated_at",
                   "deleted_column": "deleted", "batch_size": 10}),
            json!({"url": db.url(), "ssl_mode": "preferred"}),
            true,
        )
        .await;

    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [25, 0, 0, 0]);
    assert_eq!(stored(&app, connection).await, live_rows(&db).await);
    let seven = payload(&app, connection, "7").await;
    assert_eq!(seven["id"], 7, "{seven}");
    assert_eq!(seven["price"], "12345678901234567890.0123456789", "{seven}");
    assert_eq!(seven["seen_at"], "2026-12-06T05:04:03.250000Z", "{seven}");
    assert_eq!(seven["photo"], "AAH/", "{seven}");
    assert_eq!(seven["flags"], "BQ==", "{seven}");
    assert_eq!(seven["doc"], json!({"tags": ["a", "b"], "n": 1}), "{seven}");
    assert_eq!(seven["note"], "naïve ✓", "{seven}");
    assert_eq!(seven["deleted"], 0, "{seven}");
    let updated_at = seven["updated_at"].as_str().unwrap_or_default();
    assert!(
        chrono::NaiveDateTime::parse_from_str(updated_at, "%Y-%m-%dT%H:%M:%S%.f").is_ok(),
        "{seven}"
    );
    // The cursor is the newest row's time, as stored in the payload.
    let newest = payload(&app, connection, "25").await;
    assert_eq!(
        app.connection(connection).await["schedule"]["cursor_value"],
        newest["updated_at"]
    );

    // Nothing changed: neither an incremental (which re-reads the look-back
    // window) nor a forced full sync counts anything.
    for force in [false, true] {
        let job = app.sync(connection, force).await;
        assert_eq!(counts(&job), [0, 0, 0, 0], "force_full_sync={force}: {job}");
    }

    // Three inserts, two updates, one soft delete.
    db.sql(
        "INSERT INTO src_items (id, name, updated_at)
             VALUES (26, 'new 26', NOW(6)), (27, 'new 27', NOW(6)), (28, 'new 28', NOW(6));
         UPDATE src_items SET name = CONCAT('changed ', id), updated_at = NOW(6)
             WHERE id IN (3, 4);
         UPDATE src_items SET deleted = TRUE, updated_at = NOW(6) WHERE id = 5",
    )
    .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [3, 2, 1, 0], "{job}");
    assert_eq!(stored(&app, connection).await, live_rows(&db).await);

    // Hard deletes: invisible to an incremental sync, found by a full one.
    db.sql("DELETE FROM src_items WHERE id IN (1, 2)").await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "{job}");
    let job = app.sync(connection, true).await;
    assert_eq!(counts(&job), [0, 0, 2, 0], "{job}");
    assert_eq!(stored(&app, connection).await, live_rows(&db).await);
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        25
    );
}

#[tokio::test]
async fn keyset_pages_without_a_cursor_read_every_row_once_and_identifiers_are_quoted() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let db = MysqlDb::new().await;
    db.sql(
        "CREATE TABLE `odd``name; DROP TABLE src_items; --` (
             `key; --` VARCHAR(12) PRIMARY KEY, v INT);
         INSERT INTO `odd``name; DROP TABLE src_items; --`
             SELECT LPAD(seq, 5, '0'), seq FROM seq_1_to_1234;
         CREATE TABLE src_items (id INT PRIMARY KEY)",
    )
    .await;
    let connection = app
        .connection_of(
            "mysql",
            json!({"table": format!("{}.odd`name; DROP TABLE src_items; --", db.name),
                   "primary_key": "key; --", "batch_size": 100}),
            json!({"url": db.url()}),
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [1234, 0, 0, 0], "{job}");
    // The other table is still there.
    db.sql("SELECT 1 FROM src_items").await;
}

#[tokio::test]
async fn source_failures_are_classified() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let db = MysqlDb::new().await;
    db.sql("CREATE TABLE src_items (id INT PRIMARY KEY, name TEXT)")
        .await;

    // A wrong password: the source refuses the credentials.
    let refused = app
        .connection_of(
            "mysql",
            json!({"table": "src_items"}),
            json!({"url": db.url_with_password("not-the-password")}),
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
    assert!(
        !job.to_string().contains("not-the-password"),
        "the password is never shown: {job}"
    );

    // Nothing listens: transient.
    let unreachable = app
        .connection_of(
            "mysql",
            json!({"table": "src_items"}),
            json!({"url": "mysql://root@127.0.0.1:1/none"}),
            false,
        )
        .await;
    let job = app.sync(unreachable, false).await;
    assert_eq!(job["error_details"]["kind"], "transient", "{job}");

    // TLS required of a server without it: permanent, and says so.
    let plain = app
        .connection_of(
            "mysql",
            json!({"table": "src_items"}),
            json!({"url": db.url(), "ssl_mode": "required"}),
            false,
        )
        .await;
    let job = app.sync(plain, false).await;
    assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
    assert!(
        job["error"].as_str().is_some_and(|e| e.contains("TLS")),
        "{job}"
    );

    // A missing table or column: permanent, and the message names it.
    for (config, named) in [
        (json!({"table": "no_such_table"}), "no_such_table"),
        (
            json!({"table": "src_items", "cursor_column": "nope"}),
            "nope",
        ),
    ] {
        let connection = app
            .connection_of("mysql", config, json!({"url": db.url()}), true)
            .await;
        let job = app.sync(connection, false).await;
        assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
        assert!(
            job["error"].as_str().is_some_and(|e| e.contains(named)),
            "{job}"
        );
    }
}

/// A worker killed between batches and its job taken over: the store ends
/// equal to the source and nothing is counted twice.
#[tokio::test]
async fn a_sync_whose_worker_is_killed_resumes_without_counting_twice() {
    let app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    let db = MysqlDb::new().await;
    // Rows sent 5 ms apart (SLEEP per row sent, in key order): batches of
    // 10 come about 50 ms apart.
    db.sql(
        "CREATE TABLE src_base (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL);
         INSERT INTO src_base SELECT seq, CONCAT('row ', seq) FROM seq_1_to_400;
         CREATE VIEW src_slow AS SELECT id, name, SLEEP(0.005) AS pause FROM src_base",
    )
    .await;
    let connection = app
        .connection_of(
            "mysql",
            json!({"table": "src_slow", "batch_size": 10}),
            json!({"url": db.url()}),
            false,
        )
        .await;
    let (killed, done) = sync_killed_mid_way(&app, connection, false).await;
    let committed = killed["entities_inserted"].as_i64().unwrap_or(-1);
    assert!((1..400).contains(&committed), "{killed}");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [400, 0, 0, 0], "{done}");
    let ids: Vec<i64> = app
        .db()
        .await
        .query(
            "SELECT entity_id::bigint FROM entities WHERE source_connection_id = $1 ORDER BY 1",
            &[&connection],
        )
        .await
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .unwrap_or_default();
    assert_eq!(ids, (1..=400).collect::<Vec<i64>>());
}
