//! The `postgres` connector against real tables, in a source database of
//! the test's own (syncway's database is never a source), with 127.0.0.1
//! allowed as an operator would allow an internal database.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv, counts, id_of};

/// Runs SQL against the test's source database.
async fn source_sql(app: &TestApp, sql: &str) {
    app.env
        .source_db()
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

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
async fn live_rows(app: &TestApp) -> Vec<(String, Value)> {
    app.env
        .source_db()
        .await
        .query(
            "SELECT id::text AS key, to_jsonb(name) FROM src_items WHERE NOT deleted ORDER BY id",
            &[],
        )
        .await
        .expect("reading the source rows")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

async fn stored_cursor(app: &TestApp, connection: Uuid) -> Value {
    app.connection(connection).await["schedule"]["cursor_value"].clone()
}

async fn source_max_cursor(app: &TestApp) -> Value {
    app.env
        .source_db()
        .await
        .query_one("SELECT max(updated_at)::text FROM src_items", &[])
        .await
        .map(|row| Value::from(row.get::<_, Option<String>>(0)))
        .unwrap()
}

#[tokio::test]
async fn full_incremental_and_forced_full_syncs_count_exactly_what_changed() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    source_sql(
        &app,
        "CREATE TABLE src_items (
             id int PRIMARY KEY, name text NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(),
             deleted boolean NOT NULL DEFAULT false);
         CREATE INDEX ON src_items (updated_at, id);
         INSERT INTO src_items (id, name, updated_at)
             SELECT i, 'item ' || i, now() - interval '1 hour' + i * interval '1 second'
             FROM generate_series(1, 25) i;",
    )
    .await;
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "public.src_items", "cursor_column": "updated_at",
               "deleted_column": "deleted", "batch_size": 10}),
            json!({"url": app.env.source_url().await}),
            true,
        )
        .await;

    // Full sync into an empty store, three batches.
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [25, 0, 0, 0]);
    assert_eq!(stored(&app, connection).await, live_rows(&app).await);
    assert_eq!(
        stored_cursor(&app, connection).await,
        source_max_cursor(&app).await
    );

    // Nothing changed: neither an incremental (which re-reads the look-back
    // window) nor a forced full sync counts anything.
    for force in [false, true] {
        let job = app.sync(connection, force).await;
        assert_eq!(counts(&job), [0, 0, 0, 0], "force_full_sync={force}: {job}");
    }

    // Three inserts, two updates, one soft delete.
    source_sql(
        &app,
        "INSERT INTO src_items (id, name) VALUES (26, 'new 26'), (27, 'new 27'), (28, 'new 28');
         UPDATE src_items SET name = 'changed ' || id, updated_at = now() WHERE id IN (3, 4);
         UPDATE src_items SET deleted = true, updated_at = now() WHERE id = 5;",
    )
    .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [3, 2, 1, 0], "{job}");
    assert_eq!(stored(&app, connection).await, live_rows(&app).await);
    assert_eq!(
        stored_cursor(&app, connection).await,
        source_max_cursor(&app).await
    );
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        27
    );

    // Hard deletes: invisible to an incremental sync, found by a full one.
    source_sql(&app, "DELETE FROM src_items WHERE id IN (1, 2);").await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "{job}");
    let job = app.sync(connection, true).await;
    assert_eq!(counts(&job), [0, 0, 2, 0], "{job}");
    assert_eq!(stored(&app, connection).await, live_rows(&app).await);
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        25
    );
}

#[tokio::test]
async fn a_row_committed_late_with_an_earlier_timestamp_is_not_missed() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    source_sql(
        &app,
        "CREATE TABLE src_items (id int PRIMARY KEY, name text NOT NULL,
             updated_at timestamptz NOT NULL, deleted boolean NOT NULL DEFAULT false);
         INSERT INTO src_items VALUES (1, 'one', now() - interval '10 seconds'),
                                      (2, 'two', now());",
    )
    .await;
    // The cursor column comes from the connection's schedule this time.
    let collection = app.create_collection().await;
    let (status, body) = app
        .call(
            "POST",
            "/source-connections",
            Some(json!({
                "short_name": "postgres",
                "readable_collection_id": collection,
                "config": {"table": "src_items", "lookback_seconds": 60},
                "authentication": {"credentials": {"url": app.env.source_url().await}},
                "schedule": {"continuous": true, "cursor_field": "updated_at"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = id_of(&body);
    assert_eq!(counts(&app.sync(connection, false).await), [2, 0, 0, 0]);
    assert_eq!(
        stored_cursor(&app, connection).await,
        source_max_cursor(&app).await
    );
    // A transaction that took its timestamp before the last sync but
    // committed after it: its row is older than the stored cursor.
    source_sql(
        &app,
        "INSERT INTO src_items VALUES (3, 'late', now() - interval '5 seconds');",
    )
    .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [1, 0, 0, 0], "{job}");
    assert_eq!(stored(&app, connection).await.len(), 3);
}

#[tokio::test]
async fn source_failures_are_classified() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    source_sql(
        &app,
        "CREATE TABLE src_items (id int PRIMARY KEY, name text);",
    )
    .await;
    let database = app.env.source_url().await;

    // An unknown role: the source refuses the credentials.
    let refused = app
        .connection_of(
            "postgres",
            json!({"table": "src_items"}),
            json!({"url": with_user(&database, "syncway_no_such_role")}),
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

    // Nothing listens: transient.
    let unreachable = app
        .connection_of(
            "postgres",
            json!({"table": "src_items"}),
            json!({"url": "postgres://postgres@127.0.0.1:1/none"}),
            false,
        )
        .await;
    let job = app.sync(unreachable, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_details"]["kind"], "transient", "{job}");
    assert!(job["error_category"].is_null(), "{job}");

    // A missing table or column: permanent, and the message names it.
    for (config, named) in [
        (json!({"table": "no_such_table"}), "no_such_table"),
        (
            json!({"table": "src_items", "cursor_column": "nope"}),
            "nope",
        ),
    ] {
        let connection = app
            .connection_of("postgres", config, json!({"url": database}), true)
            .await;
        let job = app.sync(connection, false).await;
        assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
        assert!(
            job["error"]
                .as_str()
                .is_some_and(|error| error.contains(named)),
            "{job}"
        );
    }
}

#[tokio::test]
async fn identifiers_are_quoted_never_spliced() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    source_sql(
        &app,
        r#"CREATE TABLE "odd ""name""; DROP TABLE src_items; --" ("key; --" int PRIMARY KEY, v text);
           INSERT INTO "odd ""name""; DROP TABLE src_items; --" VALUES (1, 'a'), (2, 'b');
           CREATE TABLE src_items (id int PRIMARY KEY);"#,
    )
    .await;
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "odd \"name\"; DROP TABLE src_items; --", "primary_key": "key; --"}),
            json!({"url": app.env.source_url().await}),
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [2, 0, 0, 0], "{job}");
    // The other table is still there.
    source_sql(&app, "SELECT 1 FROM src_items").await;
}

#[tokio::test]
async fn bad_configs_are_refused_at_creation_naming_the_field() {
    let app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    let collection = app.create_collection().await;
    for (config, field) in [
        (json!({"table": "a.b.c"}), "table"),
        (json!({"table": "t", "batch_size": 0}), "batch_size"),
        (json!({"table": "t", "unknown": 1}), "unknown"),
    ] {
        let (status, body) = app
            .call(
                "POST",
                "/source-connections",
                Some(
                    json!({"short_name": "postgres", "readable_collection_id": collection,
                            "config": config}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.to_string().contains(field), "{field}: {body}");
    }
}

/// A sync stopped between batches and run again: the store ends equal to
/// the source and nothing is counted twice.
#[tokio::test]
async fn a_sync_stopped_between_batches_resumes_without_counting_twice() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| settings.worker.shutdown_grace_seconds = 0)
        .await;
    // A view that takes 5 ms per row. Its own ORDER BY (the read's order:
    // cursor, then key) lets the read evaluate the pause per row as it is
    // fetched (without it, a sort would compute every row before the first
    // batch): batches of 10 come 50 ms apart.
    source_sql(
        &app,
        "CREATE TABLE src_base (id int PRIMARY KEY, name text NOT NULL, version int NOT NULL);
         INSERT INTO src_base SELECT i, 'row ' || i, 1000 + i FROM generate_series(1, 200) i;
         CREATE FUNCTION src_pause(int) RETURNS int LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(0.005); RETURN $1; END $$;
         CREATE VIEW src_slow AS SELECT id, name, version, src_pause(id) AS pause
             FROM src_base ORDER BY version, id;",
    )
    .await;
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "src_slow", "batch_size": 10, "cursor_column": "version"}),
            json!({"url": app.env.source_url().await}),
            true,
        )
        .await;
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    let stopped = app.stop_first_worker(connection, job).await;
    let committed = stopped["entities_inserted"].as_i64().unwrap_or(-1);
    assert!(
        stopped["status"] == "running" && (1..200).contains(&committed),
        "{stopped}"
    );
    // The stored cursor is exactly the newest committed row's: never ahead
    // of the data.
    let newest_committed: i32 = app
        .db()
        .await
        .query_one(
            "SELECT max((payload->>'version')::int) FROM entities
             WHERE source_connection_id = $1",
            &[&connection],
        )
        .await
        .map(|row| row.get::<_, Option<i32>>(0).unwrap_or(-1))
        .unwrap_or(-1);
    assert_eq!(
        stored_cursor(&app, connection).await,
        json!(newest_committed.to_string()),
        "{stopped}"
    );

    app.add_worker(|_| {}).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [200, 0, 0, 0], "{done}");
    let ids: Vec<i64> = app
        .db()
        .await
        .query(
            "SELECT entity_id::bigint FROM entities WHERE source_connection_id = $1
             ORDER BY 1",
            &[&connection],
        )
        .await
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .unwrap_or_default();
    assert_eq!(ids, (1..=200).collect::<Vec<i64>>());
    // Resumed by another worker; a handback does not count as an attempt.
    assert_eq!(app.attempt(job).await, 1);
}

#[tokio::test]
async fn sslmode_is_honoured_and_verify_full_checks_the_certificate() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let ssl: String = app
        .db()
        .await
        .query_one("SHOW ssl", &[])
        .await
        .map(|row| row.get(0))
        .expect("SHOW ssl");
    assert_eq!(
        ssl, "on",
        "the test server offers TLS (Debian's default, a self-signed certificate)"
    );
    source_sql(
        &app,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    )
    .await;
    let url = app.env.source_url().await;
    for (sslmode, in_url) in [
        ("disable", true),
        ("prefer", false),
        ("require", true),
        ("require", false),
    ] {
        let credentials = if in_url {
            json!({"url": format!("{url}?sslmode={sslmode}")})
        } else {
            json!({"url": url, "sslmode": sslmode})
        };
        let connection = app
            .connection_of("postgres", json!({"table": "t"}), credentials, false)
            .await;
        let job = app.sync(connection, false).await;
        assert_eq!(counts(&job), [1, 0, 0, 0], "sslmode={sslmode}: {job}");
    }
    // The certificate is self-signed: verify-full refuses it, permanently.
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "t"}),
            json!({"url": format!("{url}?sslmode=verify-full")}),
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
    assert!(
        job["error"].as_str().is_some_and(|e| e.contains("TLS")),
        "{job}"
    );
}

/// `url` with another user name (the password, if any, stays).
fn with_user(url: &str, user: &str) -> String {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_username(user).expect("a postgres URL has a user");
    url.to_string()
}
