//! The database, not the application, allows one active job per connection.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, TestEnv};

#[tokio::test]
async fn twenty_concurrent_triggers_give_exactly_one_job() {
    // No worker: the accepted job stays pending, so every other trigger
    // must see it.
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let connection = app.stub_connection(json!({}), false).await;
    let path = format!("/source-connections/{connection}/run");
    let triggers = (0..20).map(|_| app.call("POST", &path, None));
    let answers = futures_util::future::join_all(triggers).await;
    let ok = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    let conflicts: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CONFLICT)
        .collect();
    assert_eq!(ok, 1, "{answers:?}");
    assert_eq!(conflicts.len(), 19, "{answers:?}");
    assert!(conflicts.iter().all(|(_, body)| body["detail"].is_string()));
    let jobs: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM sync_jobs WHERE source_connection_id = $1",
            &[&connection],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1);
    assert_eq!(jobs, 1);
}
