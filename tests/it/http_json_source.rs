//! The `http_json` connector against a local mock API (wiremock).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{
    body_string_contains, header, method, path, query_param, query_param_is_missing,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{TestApp, TestEnv, counts};

fn item(id: u32, version: u32, updated_at: &str) -> Value {
    json!({"id": id, "name": format!("item {id} v{version}"), "updated_at": updated_at})
}

#[tokio::test]
async fn next_link_pages_with_an_api_key_then_incremental_by_cursor() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let api = MockServer::start().await;
    let key = || header("X-API-Key", "secret-key");
    // Full read: three pages linked by "links.next" (relative, then absolute).
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(key())
        .and(query_param_is_missing("since"))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [item(1, 1, "2026-01-01T00:00:01Z"), item(2, 1, "2026-01-01T00:00:02Z")],
            "links": {"next": "/items?page=2"}})))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(key())
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [item(3, 1, "2026-01-01T00:00:05Z"), {"name": "no id"}],
            "links": {"next": format!("{}/items?page=3", api.uri())}})))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(key())
        .and(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [item(4, 1, "2026-01-01T00:00:03Z")], "links": {"next": null}})))
        .mount(&api)
        .await;
    // Incremental read: only what changed since the cursor.
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(key())
        .and(query_param("since", "2026-01-01T00:00:05Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [item(2, 2, "2026-01-01T00:00:07Z"), item(5, 1, "2026-01-01T00:00:06Z")],
            "links": {}})))
        .mount(&api)
        .await;

    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/items", api.uri()), "items_path": "data",
               "next_link_path": "links.next", "cursor_param": "since",
               "cursor_field": "updated_at"}),
            json!({"api_key": "secret-key"}),
            true,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    // Four items with ids; the one without is counted as failed.
    assert_eq!(counts(&job), [4, 0, 0, 1], "{job}");
    let body = app.connection(connection).await;
    assert_eq!(body["schedule"]["cursor_value"], "2026-01-01T00:00:05Z");

    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [1, 1, 0, 0], "{job}");
    let body = app.connection(connection).await;
    assert_eq!(body["schedule"]["cursor_value"], "2026-01-01T00:00:07Z");
    assert_eq!(body["entities"]["total_entities"], 5);

    // A forced full sync reads everything again: item 5 is gone from the
    // full listing (the mock's), so it is deleted; item 2 is back to v1.
    let job = app.sync(connection, true).await;
    assert_eq!(counts(&job), [0, 1, 1, 1], "{job}");
}

#[tokio::test]
async fn page_tokens_with_a_bearer_token() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let api = MockServer::start().await;
    let bearer = || header("Authorization", "Bearer tok");
    Mock::given(method("GET"))
        .and(path("/v1/things"))
        .and(bearer())
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"key": "a"}, {"key": "b"}], "next_cursor": "t2"})))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/things"))
        .and(bearer())
        .and(query_param("cursor", "t2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"key": "c"}], "next_cursor": ""})))
        .mount(&api)
        .await;
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/v1/things", api.uri()), "items_path": "results",
               "id_field": "key", "page_token_path": "next_cursor", "page_token_param": "cursor"}),
            json!({"bearer_token": "tok"}),
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [3, 0, 0, 0], "{job}");
    // Nothing changed: a second full sync counts nothing.
    let job = app.sync(connection, false).await;
    assert_eq!(counts(&job), [0, 0, 0, 0], "{job}");
}

#[tokio::test]
async fn oauth2_refresh_tokens_are_exchanged_and_refusals_need_reauthentication() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=good"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "fresh", "token_type": "bearer"})),
        )
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("refresh_token=revoked"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(header("Authorization", "Bearer fresh"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": "x"}])))
        .mount(&api)
        .await;
    let config = json!({"url": format!("{}/items", api.uri()),
                        "token_url": format!("{}/token", api.uri())});
    let good = app
        .connection_of(
            "http_json",
            config.clone(),
            json!({"refresh_token": "good", "client_id": "c", "client_secret": "s"}),
            false,
        )
        .await;
    let job = app.sync(good, false).await;
    assert_eq!(counts(&job), [1, 0, 0, 0], "{job}");

    let revoked = app
        .connection_of(
            "http_json",
            config,
            json!({"refresh_token": "revoked"}),
            false,
        )
        .await;
    let job = app.sync(revoked, false).await;
    assert_eq!(
        (job["status"].as_str(), job["error_category"].as_str()),
        (Some("failed"), Some("oauth_credentials_expired")),
        "{job}"
    );
    assert_eq!(app.connection(revoked).await["status"], "needs_reauth");
}

#[tokio::test]
async fn refused_keys_rate_limits_and_outages_are_classified() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/refused"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&api)
        .await;
    // Rate limited once (wait 1 s), then served.
    Mock::given(method("GET"))
        .and(path("/limited"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/limited"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 1}])))
        .with_priority(2)
        .mount(&api)
        .await;
    // Down for longer than the connector waits.
    Mock::given(method("GET"))
        .and(path("/down"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "120"))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&api)
        .await;
    let at = |route: &str| json!({"url": format!("{}/{route}", api.uri()), "timeout_seconds": 1});

    let refused = app
        .connection_of(
            "http_json",
            at("refused"),
            json!({"api_key": "wrong"}),
            false,
        )
        .await;
    let job = app.sync(refused, false).await;
    assert_eq!(job["error_category"], "api_key_invalid", "{job}");

    let limited = app
        .connection_of("http_json", at("limited"), json!({"api_key": "k"}), false)
        .await;
    let started = Instant::now();
    let job = app.sync(limited, false).await;
    assert_eq!(counts(&job), [1, 0, 0, 0], "{job}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not waited out"
    );

    let down = app
        .connection_of("http_json", at("down"), json!({"api_key": "k"}), false)
        .await;
    let job = app.sync(down, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_details"]["kind"], "transient", "{job}");
    assert_eq!(job["error_details"]["retry_after_seconds"], 120.0, "{job}");
    assert!(job["error_category"].is_null(), "{job}");

    let slow = app
        .connection_of("http_json", at("slow"), json!({"api_key": "k"}), false)
        .await;
    let job = app.sync(slow, false).await;
    assert_eq!(job["error_details"]["kind"], "transient", "{job}");
}

/// A sync stopped between pages and run again: every item stored once,
/// nothing counted twice.
#[tokio::test]
async fn a_sync_stopped_between_pages_resumes_without_counting_twice() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| settings.worker.shutdown_grace_seconds = 0)
        .await;
    let api = MockServer::start().await;
    let page = |ids: std::ops::Range<u32>, next: Value| {
        json!({"items": ids.map(|id| item(id, 1, "2026-01-01T00:00:00Z")).collect::<Vec<_>>(),
               "next": next})
    };
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(0..10, json!("/items?page=2"))))
        .mount(&api)
        .await;
    // The second page takes a while: the worker is stopped meanwhile.
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(10..20, json!(null)))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&api)
        .await;
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/items", api.uri()), "items_path": "items",
               "next_link_path": "next"}),
            json!({"api_key": "k"}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    // The worker reads one page ahead (the last page commits with the final
    // status): once the slow second page is asked for, the first is read
    // and waiting to be written.
    crate::harness::eventually(
        "the second page requested",
        crate::harness::DEADLINE,
        || async {
            let requests = api.received_requests().await.unwrap_or_default();
            requests
                .iter()
                .any(|request| request.url.query() == Some("page=2"))
                .then_some(())
        },
    )
    .await;
    let stopped = app.stop_first_worker(connection, job).await;
    assert_eq!(stopped["status"], "running", "{stopped}");
    // Handing the job back committed the page it had read, and only that.
    let committed = counts(&stopped)[0];
    assert_eq!(committed, 10, "{stopped}");

    app.add_worker(|_| {}).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        counts(&done),
        [20, 0, 0, 0],
        "{done} (first attempt committed {committed})"
    );
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        20
    );
    // Resumed by another worker; a handback does not count as an attempt.
    assert_eq!(app.attempt(job).await, 1);
}
