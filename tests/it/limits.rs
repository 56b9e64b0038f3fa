//! Resource bounds on what one sync may consume (CONTRACT.md §4): each
//! limit met, and what the job then records.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{TestApp, TestEnv, counts};

#[tokio::test]
async fn an_oversized_or_unstorable_entity_fails_and_the_job_goes_on() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| settings.connectors.max_entity_bytes = 1024)
        .await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "small", "v": 1},
            {"id": "big", "body": "x".repeat(4000)},
            {"id": "nul\u{0}id", "v": 2},
            {"id": "also-small", "v": 3},
        ])))
        .mount(&api)
        .await;
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/items", api.uri())}),
            None,
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [2, 0, 0, 2], "{job}");
    let failures = &job["error_details"]["failed_entities"];
    assert_eq!(failures[0]["entity_id"], "big", "{job}");
    assert!(
        failures[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("MAX_ENTITY_BYTES"))
    );
    assert!(
        failures[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("NUL"))
    );
}

#[tokio::test]
async fn responses_and_page_counts_are_bounded() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| {
        settings.connectors.max_response_bytes = 2048;
        settings.connectors.max_pages = 3;
    })
    .await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/huge"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([{"id": 1, "body": "y".repeat(5000)}])),
        )
        .mount(&api)
        .await;
    // Pages that never end: each links to the next.
    for page in 1..=5 {
        Mock::given(method("GET"))
            .and(path("/endless"))
            .and(query_param("page", page.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "items": [{"id": page}], "next": format!("/endless?page={}", page + 1)})))
            .mount(&api)
            .await;
    }
    let huge = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/huge", api.uri())}),
            None,
            false,
        )
        .await;
    let job = app.sync(huge, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("MAX_RESPONSE_BYTES")),
        "{job}"
    );
    let endless = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/endless?page=1", api.uri()), "items_path": "items",
                   "next_link_path": "next"}),
            None,
            false,
        )
        .await;
    let job = app.sync(endless, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("MAX_PAGES")),
        "{job}"
    );
    // The three pages read were committed.
    assert_eq!(counts(&job), [3, 0, 0, 0], "{job}");
}

#[tokio::test]
async fn a_job_past_its_wall_time_fails_with_a_clear_error() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.worker.max_job_seconds = 1)
        .await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 1000, "delay_ms_per_entity": 20}),
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("MAX_JOB_SECONDS")),
        "{job}"
    );
    let took = job["duration_seconds"].as_f64().unwrap_or(f64::MAX);
    assert!((1.0..5.0).contains(&took), "{job}");
}

#[tokio::test]
async fn a_sources_retry_after_never_outlasts_the_retry_cap() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| {
        settings.retry.max_attempts = 2;
        settings.retry.base_delay_ms = 100;
        settings.retry.max_delay_ms = 500;
    })
    .await;
    let api = MockServer::start().await;
    // Retry-After of three years, which the broker could not take as a TTL.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "99999999"))
        .mount(&api)
        .await;
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/items", api.uri()), "max_retries": 0}),
            None,
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let waiting = app
        .job_where(connection, job, "a scheduled retry", |job| {
            job["error_details"]["next_attempt_in_seconds"].is_number()
        })
        .await;
    let delay = waiting["error_details"]["next_attempt_in_seconds"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!((0.0..=0.5).contains(&delay), "{waiting}");
    // The second attempt ran (the message was not refused) and failed.
    let done = app.finished_job(connection, job).await;
    assert_eq!(
        (
            done["status"].as_str(),
            done["error_details"]["attempts"].as_i64()
        ),
        (Some("failed"), Some(2)),
        "{done}"
    );
}

#[tokio::test]
async fn a_postgres_source_statement_is_bounded_by_statement_timeout() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| settings.connectors.postgres_statement_timeout_seconds = 1)
        .await;
    app.env
        .source_db()
        .await
        .batch_execute(
            "CREATE TABLE slow_base (id int PRIMARY KEY);
             INSERT INTO slow_base VALUES (1);
             CREATE VIEW slow AS SELECT id, pg_sleep(3)::text AS pause FROM slow_base;",
        )
        .await
        .expect("source view");
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "slow"}),
            json!({"url": app.env.source_url().await}),
            false,
        )
        .await;
    let started = std::time::Instant::now();
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("statement timeout")),
        "{job}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_postgres_source_that_never_answers_times_out() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| settings.connectors.postgres_connect_timeout_seconds = 1)
        .await;
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let port = silent.local_addr().expect("its address").port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "t"}),
            json!({"url": format!("postgres://postgres@127.0.0.1:{port}/db?sslmode=disable")}),
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    held.abort();
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("CONNECT_TIMEOUT")),
        "{job}"
    );
    let took = job["duration_seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(took < 5.0, "{job}");
}

#[tokio::test]
async fn a_postgres_batch_ends_at_the_batch_byte_budget() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| {
        settings.connectors.max_entity_bytes = 2048;
        settings.connectors.max_batch_bytes = 8192;
    })
    .await;
    // 200 rows of about 1 KiB, 5 ms each: one batch of 1,000 rows would
    // commit all of them at the end; batches of 8 KiB commit as they go.
    app.env
        .source_db()
        .await
        .batch_execute(
            "CREATE TABLE wide_base (id int PRIMARY KEY, body text NOT NULL);
             INSERT INTO wide_base SELECT i, repeat('x', 1000) FROM generate_series(1, 200) i;
             CREATE FUNCTION wide_pause(int) RETURNS int LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM pg_sleep(0.005); RETURN $1; END $$;
             CREATE VIEW wide AS SELECT id, body, wide_pause(id) AS pause FROM wide_base ORDER BY id;",
        )
        .await
        .expect("source view");
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "wide", "batch_size": 1000}),
            json!({"url": app.env.source_url().await}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let running = app.running_with_data(connection, job).await;
    let inserted = running["entities_inserted"].as_i64().unwrap_or(-1);
    assert!((1..=16).contains(&inserted), "{running}");
    let done = app.finished_job(connection, job).await;
    assert_eq!(counts(&done), [200, 0, 0, 0], "{done}");
}
