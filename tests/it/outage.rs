//! Triggers are accepted while the broker is unreachable and published once
//! it is back: the outbox delays jobs, it never loses them.

use serde_json::json;

use crate::harness::{TcpProxy, TestApp, TestEnv};

#[tokio::test]
async fn a_trigger_accepted_while_the_broker_is_unreachable_runs_once_it_is_back() {
    let env = TestEnv::new().await;
    // The API's relay points at a port where nothing listens.
    let address = TcpProxy::free_address().await;
    let mut app = TestApp::with_api(env, |settings| {
        settings.amqp.url = format!("amqp://guest:guest@{address}/%2f");
    })
    .await;
    app.add_worker(|_| {}).await;
    let connection = app.stub_connection(json!({"entity_count": 7}), false).await;
    let job = app.run(connection, false).await;

    // Nothing can be published: the job waits in the outbox.
    let (status, ready) = app.call_with_key("GET", "/readyz", None, None).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let outbox: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM outbox WHERE job_id = $1", &[&job])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1);
    assert_eq!(outbox, 1);
    assert_eq!(app.job(connection, job).await["status"], "pending");

    // The broker becomes reachable there.
    let broker = "127.0.0.1:5672".parse().unwrap_or_else(|e| panic!("{e}"));
    let proxy = TcpProxy::start(address, broker).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["entities_inserted"], 7);
    let outbox: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM outbox", &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1);
    assert_eq!(outbox, 0);
    drop(app);
    proxy.stop();
}

#[tokio::test]
async fn the_api_answers_503_with_retry_after_while_postgres_is_unreachable() {
    let env = TestEnv::new().await;
    let nowhere = TcpProxy::free_address().await;
    let mut settings = env.settings();
    settings.database.url = format!("postgres://postgres@{nowhere}/syncway");
    let (_api, url) = crate::harness::start_api(settings).await;
    let http = reqwest::Client::new();
    for path in ["/source-connections", "/readyz"] {
        let response = http
            .get(format!("{url}{path}"))
            .header("x-api-key", "sw_any_key")
            .send()
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(
            response.status(),
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u32>().ok());
        assert!(retry_after.is_some_and(|seconds| seconds > 0), "{path}");
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(body["detail"].is_string(), "{path}: {body}");
    }
    // Without a key it is still 401: auth needs no database to say so.
    let response = http.get(format!("{url}/source-connections")).send().await;
    assert_eq!(
        response.map(|r| r.status()).ok(),
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
}
