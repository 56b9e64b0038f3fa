//! The `postgres_cdc` connector against a private PostgreSQL server that
//! the test starts with `wal_level=logical` (never the shared one), with
//! 127.0.0.1 allowed as an operator would allow an internal database.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::pg_cluster::PgCluster;
use crate::harness::{TestApp, TestEnv, counts, eventually, sync_killed_mid_way};

/// (entity id, stored payload's name) of every stored entity, by id.
async fn stored(app: &TestApp, connection: Uuid) -> Vec<(String, Value)> {
    app.pairs(
        "SELECT entity_id, payload->'name' FROM entities WHERE source_connection_id = $1
         ORDER BY entity_id COLLATE \"C\"",
        &[&connection],
    )
    .await
}

/// (entity id, name) of the source's rows, as the connector names them.
async fn live_rows(cluster: &PgCluster) -> Vec<(String, Value)> {
    let rows = cluster
        .client("postgres")
        .await
        .query(
            "SELECT id, name FROM (
                 SELECT 'public.items:' || id AS id, to_jsonb(name) AS name FROM items
                 UNION ALL
                 SELECT 'public.pairs:' || array_to_json(array[a::text, b])::text, to_jsonb(name)
                 FROM pairs) r
             ORDER BY id COLLATE \"C\"",
            &[],
        )
        .await
        .expect("reading the source rows");
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

async fn connection(app: &TestApp, cluster: &PgCluster, config: Value) -> Uuid {
    app.connection_of(
        "postgres_cdc",
        config,
        json!({"url": cluster.url("postgres")}),
        true,
    )
    .await
}

const TABLES: &str = "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, doc jsonb,
                          price numeric(12,2), at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE pairs (a int, b text, name text, PRIMARY KEY (a, b));
    INSERT INTO items (id, name, doc, price)
        SELECT i, 'item ' || i, jsonb_build_object('i', i), i * 1.5 FROM generate_series(1, 25) i;
    INSERT INTO pairs VALUES (1, 'x', 'pair 1'), (2, 'y', 'pair 2');";

#[tokio::test]
async fn a_row_deleted_at_the_source_is_deleted_by_the_next_incremental_sync() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let cluster = PgCluster::start().await;
    cluster.sql(TABLES).await;
    let connection = connection(
        &app,
        &cluster,
        json!({"tables": ["items", "public.pairs"], "batch_size": 10}),
    )
    .await;

    // The first run is full: a snapshot of both tables.
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [27, 0, 0, 0]);
    assert_eq!(stored(&app, connection).await, live_rows(&cluster).await);
    let seven: Value = app
        .db()
        .await
        .query_one(
            "SELECT payload FROM entities WHERE source_connection_id = $1
             AND entity_id = 'public.items:7'",
            &[&connection],
        )
        .await
        .map(|row| row.get(0))
        .expect("item 7");
    assert_eq!(seven["doc"], json!({"i": 7}), "{seven}");
    assert_eq!(seven["price"], "10.50", "{seven}");
    assert_eq!(seven["id"], 7, "{seven}");

    // Nothing changed: nothing counted, incremental or full.
    for force in [false, true] {
        let job = app.sync(connection, force).await;
        assert_eq!(counts(&job), [0, 0, 0, 0], "force_full_sync={force}: {job}");
    }

    // Three inserts, two updates, two HARD deletes, a key change (a
    // delete and an insert): an incremental run sees every one.
    cluster
        .sql(
            "INSERT INTO items (id, name) VALUES (26, 'new 26'), (27, 'new 27'), (28, 'new 28');
             UPDATE items SET name = 'changed ' || id WHERE id IN (3, 4);
             DELETE FROM items WHERE id IN (1, 2);
             UPDATE pairs SET b = 'z' WHERE a = 2;",
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [4, 2, 3, 0], "{job}");
    assert_eq!(stored(&app, connection).await, live_rows(&cluster).await);
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        28
    );
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "read once: {job}");

    // A TRUNCATE deletes every entity of its table, and only those.
    cluster
        .sql("TRUNCATE pairs; INSERT INTO pairs VALUES (9, 'q', 'after');")
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [1, 0, 2, 0], "{job}");
    assert_eq!(stored(&app, connection).await, live_rows(&cluster).await);
}

/// Transactions committed after the slot's start but before the full
/// sync's snapshot are in both: the stream must skip them. With batches
/// of one, applying them again would count an insert and a delete.
#[tokio::test]
async fn what_the_snapshot_saw_is_not_applied_again_from_the_stream() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let cluster = PgCluster::start().await;
    cluster
        .sql(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items VALUES (1, 'one'), (2, 'two');
             CREATE PUBLICATION mine FOR TABLE items;",
        )
        .await;
    cluster
        .sql("SELECT pg_create_logical_replication_slot('mine', 'pgoutput')")
        .await;
    cluster
        .sql(
            "INSERT INTO items VALUES (100, 'brief');
             DELETE FROM items WHERE id = 100;
             UPDATE items SET name = 'uno' WHERE id = 1;
             INSERT INTO items VALUES (3, 'three');",
        )
        .await;
    let connection = connection(
        &app,
        &cluster,
        json!({"tables": ["items"], "publication": "mine", "slot": "mine",
               "create_slot": false, "batch_size": 1}),
    )
    .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [3, 0, 0, 0], "{job}");
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "applied once: {job}");
    // What comes after the snapshot is applied.
    cluster
        .sql("DELETE FROM items WHERE id = 3; UPDATE items SET name = 'dos' WHERE id = 2;")
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 1, 1, 0], "{job}");
    // The slot is the user's (create_slot false): deleting the connection
    // leaves it; syncway's own are dropped (the next test).
}

#[tokio::test]
async fn source_errors_are_clear_and_deleting_the_connection_drops_its_slot() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let cluster = PgCluster::start().await;
    cluster
        .sql(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             CREATE TABLE loose (id int, name text);
             CREATE ROLE plain LOGIN;
             GRANT SELECT ON items TO plain;
             INSERT INTO items SELECT i, 'row ' || i FROM generate_series(1, 10) i;",
        )
        .await;
    let failure = |config: Value, credentials: Value| {
        let app = &app;
        async move {
            let connection = app
                .connection_of("postgres_cdc", config, credentials, true)
                .await;
            let job = app.sync(connection, false).await;
            assert_eq!(job["status"], "failed", "{job}");
            job
        }
    };
    let url = json!({"url": cluster.url("postgres")});
    // No replica identity.
    let job = failure(json!({"tables": ["loose"]}), url.clone()).await;
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("replica identity")),
        "{job}"
    );
    // No REPLICATION attribute.
    let plain = json!({"url": format!("postgres://plain@127.0.0.1:{}/postgres", cluster.port)});
    let job = failure(json!({"tables": ["items"]}), plain).await;
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("REPLICATION")),
        "{job}"
    );
    // wal_level replica: the shared server.
    let shared = json!({"url": app.env.source_url().await});
    let job = failure(json!({"tables": ["items"]}), shared).await;
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("wal_level")),
        "{job}"
    );
    // An unknown role: credentials refused.
    let nobody = json!({"url": format!("postgres://nobody@127.0.0.1:{}/postgres", cluster.port)});
    let job = failure(json!({"tables": ["items"]}), nobody).await;
    assert_eq!(job["error_category"], "api_key_invalid", "{job}");

    // A slot that holds more WAL than max_lag_bytes fails the job and is
    // dropped; a full sync starts again.
    let lagging = connection(
        &app,
        &cluster,
        json!({"tables": ["items"], "max_lag_bytes": 1048576}),
    )
    .await;
    assert_eq!(counts(&app.sync(lagging, false).await), [10, 0, 0, 0]);
    let slot = format!("syncway_{}", lagging.simple());
    cluster
        .sql("CREATE TABLE filler AS SELECT i, repeat('x', 200) AS pad FROM generate_series(1, 20000) i")
        .await;
    let job = app.sync(lagging, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_lag_bytes")),
        "{job}"
    );
    assert_eq!(slots(&cluster).await, Vec::<String>::new(), "dropped");
    let job = app.sync(lagging, true).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "{job}");
    assert_eq!(slots(&cluster).await, [slot]);

    // Deleting the connection drops its slot and its publication.
    let (status, body) = app
        .call("DELETE", &format!("/source-connections/{lagging}"), None)
        .await;
    assert!(status.is_success(), "{body}");
    eventually(
        "the slot to be dropped",
        Duration::from_secs(20),
        || async { slots(&cluster).await.is_empty().then_some(()) },
    )
    .await;
    let publications: i64 = cluster
        .client("postgres")
        .await
        .query_one("SELECT count(*) FROM pg_publication", &[])
        .await
        .map(|row| row.get(0))
        .expect("publications");
    assert_eq!(publications, 0);
}

async fn slots(cluster: &PgCluster) -> Vec<String> {
    cluster
        .client("postgres")
        .await
        .query(
            "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
            &[],
        )
        .await
        .expect("slots")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A worker killed mid-way through the snapshot, and again mid-way through
/// a stream of changes: each time the job is taken over and nothing is
/// counted twice.
#[tokio::test]
async fn a_sync_whose_worker_is_killed_resumes_without_counting_twice() {
    let app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    let cluster = PgCluster::start().await;
    cluster
        .sql(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT i, 'row ' || i FROM generate_series(1, 4000) i;",
        )
        .await;
    let connection = connection(
        &app,
        &cluster,
        json!({"tables": ["items"], "batch_size": 5}),
    )
    .await;
    let (killed, done) = sync_killed_mid_way(&app, connection, false).await;
    assert!(
        killed["entities_inserted"]
            .as_i64()
            .is_some_and(|n| (1..4000).contains(&n)),
        "{killed}"
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [4000, 0, 0, 0], "{done}");

    // 4000 updates, one transaction each, then 1000 hard deletes.
    cluster
        .sql(
            "DO $$ BEGIN FOR i IN 1..4000 LOOP
                 UPDATE items SET name = 'changed ' || i WHERE id = i; COMMIT;
             END LOOP; END $$",
        )
        .await;
    cluster.sql("DELETE FROM items WHERE id > 3000").await;
    let (killed, done) = sync_killed_mid_way(&app, connection, false).await;
    assert!(
        killed["entities_updated"]
            .as_i64()
            .is_some_and(|n| (1..4000).contains(&n)),
        "{killed}"
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [0, 4000, 1000, 0], "{done}");
    assert_eq!(stored(&app, connection).await.len(), 3000);
}

/// An update that leaves a large (TOASTed) value unchanged does not carry
/// it in the stream: the connector reads the row back from the table, over
/// a second session while the first is streaming the changes.
#[tokio::test]
async fn an_unchanged_toasted_value_is_read_back_from_the_table() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let cluster = PgCluster::start().await;
    cluster
        .sql(
            "CREATE TABLE docs (id int PRIMARY KEY, name text NOT NULL, body text);
             ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
             INSERT INTO docs SELECT i, 'doc ' || i, repeat(md5(i::text), 400)
             FROM generate_series(1, 3) i;",
        )
        .await;
    let connection = connection(&app, &cluster, json!({"tables": ["docs"]})).await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [3, 0, 0, 0], "{job}");

    cluster
        .sql("UPDATE docs SET name = 'renamed ' || id WHERE id <= 2")
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [0, 2, 0, 0], "{job}");
    let stored = app
        .pairs(
            "SELECT entity_id, payload FROM entities WHERE source_connection_id = $1
             ORDER BY entity_id",
            &[&connection],
        )
        .await;
    let source = cluster
        .client("postgres")
        .await
        .query("SELECT id, name, body FROM docs ORDER BY id", &[])
        .await
        .expect("reading the source rows");
    assert_eq!(stored.len(), source.len());
    for ((id, payload), row) in stored.iter().zip(&source) {
        let key: i32 = row.get(0);
        let body: String = row.get(2);
        assert_eq!(id, &format!("public.docs:{key}"));
        assert_eq!(payload["name"], row.get::<_, String>(1), "{id}");
        assert_eq!(body.len(), 12_800);
        assert_eq!(payload["body"], body, "{id}: the body is whole");
    }
}
