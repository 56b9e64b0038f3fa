//! Failures schemathesis found (tests/it/fuzz.rs), each kept as a test of
//! its own so that it cannot come back.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, TestEnv};

/// `after=0300` decodes to an id holding NUL, which Postgres cannot
/// compare as text: it was a 500.
#[tokio::test]
async fn an_entity_cursor_that_decodes_to_nul_is_422() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let connection = app.stub_connection(json!({}), false).await;
    for after in ["0300", "00", "616200"] {
        let (status, body) = app
            .call(
                "GET",
                &format!("/source-connections/{connection}/entities?after={after}&limit=1"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{after}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["query", "after"]));
    }
}
