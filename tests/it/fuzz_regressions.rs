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

/// `expires_in_days: 15959.0` is an integer by JSON Schema (and to
/// Airweave's pydantic models): it was a 422.
#[tokio::test]
async fn integral_numbers_with_a_fraction_part_are_integers() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let (status, body) = app
        .call("POST", "/api-keys", Some(json!({"expires_in_days": 30.0})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .call("POST", "/api-keys", Some(json!({"expires_in_days": 30.5})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "expires_in_days"]));
}

/// A `skip` beyond i64 is out of the described range (maximum), not a
/// parse failure the description did not announce.
#[tokio::test]
async fn the_description_bounds_skip() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let description: serde_json::Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .expect("the description")
        .json()
        .await
        .expect("JSON");
    for path in ["/collections", "/source-connections"] {
        let parameters = description["paths"][path]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let skip = parameters
            .iter()
            .find(|p| p["name"] == "skip")
            .unwrap_or_else(|| panic!("{path} has skip"));
        assert_eq!(skip["schema"]["maximum"], json!(i64::MAX), "{path}");
    }
}
