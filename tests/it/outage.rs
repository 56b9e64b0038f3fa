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
