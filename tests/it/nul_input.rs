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
