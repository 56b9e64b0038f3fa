//! A NUL character, which Postgres text cannot hold, anywhere a client can
//! put one: a clear 422 naming where it is, never a 500.

use serde_json::json;

use crate::api_errors::{api, assert_invalid};

#[tokio::test]
async fn a_nul_in_a_query_parameter_is_a_422_not_a_500() {
    let app = api().await;
    for path in [
        "/source-connections?collection=%00",
        "/source-connections?collection=a%00b",
        "/source-connections?skip=%00",
    ] {
        let (status, body) = app.call("GET", path, None).await;
        let name = if path.contains("skip") {
            "skip"
        } else {
            "collection"
        };
        assert_invalid(status, &body, json!(["query", name]));
    }
}

#[tokio::test]
async fn a_nul_in_a_json_body_is_a_422_naming_the_field() {
    let app = api().await;
    let (status, body) = app
        .call("POST", "/collections", Some(json!({"name": "a\u{0}b"})))
        .await;
    assert_invalid(status, &body, json!(["body", "name"]));
    let collection = app.create_collection().await;
    let (status, body) = app
        .call(
            "POST",
            "/source-connections",
            Some(
                json!({"short_name": "stub", "readable_collection_id": collection,
                        "description": "x\u{0}", "config": {"entity_count": 1}}),
            ),
        )
        .await;
    assert_invalid(status, &body, json!(["body", "description"]));
}

#[tokio::test]
async fn a_nul_in_a_path_parameter_is_a_422_naming_it() {
    let app = api().await;
    for (method, path, name) in [
        ("GET", "/collections/%00", "readable_id"),
        ("GET", "/collections/a%00b", "readable_id"),
        ("GET", "/source-connections/%00", "source_connection_id"),
        ("GET", "/sync/job/%00/subscribe", "job_id"),
    ] {
        let (status, body) = app.call(method, path, None).await;
        assert_invalid(status, &body, json!(["path", name]));
    }
}

#[tokio::test]
async fn null_is_not_a_role_nor_a_name() {
    let app = api().await;
    for field in ["role", "name"] {
        let (status, body) = app
            .call("POST", "/api-keys", Some(json!({ field: null })))
            .await;
        assert_invalid(status, &body, json!(["body", field]));
    }
    // Left out, both take their defaults.
    let (status, body) = app.call("POST", "/api-keys", Some(json!({}))).await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(body["role"], "member");
}
