//! The served description (CONTRACT.md §7): `GET /openapi.json` without a
//! key, and true to the router both ways. (Every response the suite
//! receives is also checked against it: see `harness/openapi.rs`.)

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{TestApp, TestEnv, openapi::template_of};

#[tokio::test]
async fn the_description_is_served_without_a_key() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let response = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let served: Value = response.json().await.expect("JSON");
    assert_eq!(served["openapi"], "3.1.0");
    let built: Value = serde_json::from_str(syncway_api::openapi_json()).expect("JSON");
    assert_eq!(served, built);
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_served() {
    let description: Value = serde_json::from_str(syncway_api::openapi_json()).expect("JSON");
    let paths = description["paths"].as_object().expect("paths");
    let routes: Vec<(String, String)> = syncway_api::route_table()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_ascii_lowercase(), path.to_owned()))
        .collect();
    for (method, path) in &routes {
        let operation = paths.get(path).and_then(|item| item.get(method));
        assert!(
            operation.is_some(),
            "{method} {path} is served but not documented"
        );
        assert!(
            operation.and_then(|op| op.get("operationId")).is_some(),
            "{method} {path} has no operationId"
        );
    }
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    for (path, item) in paths {
        for method in methods.iter().filter(|m| item.get(**m).is_some()) {
            assert!(
                routes.contains(&((*method).to_owned(), path.clone())),
                "{method} {path} is documented but not served"
            );
        }
    }
    // A concrete path finds its template, the literal one first.
    assert_eq!(
        template_of(paths, "/admin/dead-letters/redrive").as_deref(),
        Some("/admin/dead-letters/redrive")
    );
    assert_eq!(
        template_of(paths, "/source-connections/abc/jobs").as_deref(),
        Some("/source-connections/{source_connection_id}/jobs")
    );
}
