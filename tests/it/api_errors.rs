//! Every error status of the API, with the contract's bodies: 401/403
//! before validation, 404 for missing and foreign objects, 409 conflicts,
//! 422 validation with locations, 405 and unknown routes. Never a 500.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv};

/// The API alone: these tests need no worker.
pub(crate) async fn api() -> TestApp {
    TestApp::with_api(TestEnv::new().await, |_| {}).await
}

fn assert_detail(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert!(
        body["detail"].is_string(),
        "detail must be a string: {body}"
    );
}

pub(crate) fn assert_invalid(status: StatusCode, body: &Value, loc: Value) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let errors = body["detail"].as_array().cloned().unwrap_or_default();
    assert!(!errors.is_empty(), "{body}");
    assert_eq!(errors[0]["loc"], loc, "{body}");
    assert!(
        errors[0]["msg"].is_string() && errors[0]["type"].is_string(),
        "{body}"
    );
}

const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/source-connections/{c}/run"),
    ("GET", "/source-connections/{c}/jobs"),
    ("GET", "/source-connections/{c}/jobs/{j}"),
    ("POST", "/source-connections/{c}/jobs/{j}/cancel"),
    ("GET", "/source-connections/{c}/entities"),
    ("POST", "/collections"),
    ("GET", "/collections/x"),
    ("POST", "/source-connections"),
    ("GET", "/source-connections"),
    ("GET", "/source-connections/{c}"),
    ("PATCH", "/source-connections/{c}"),
    ("DELETE", "/source-connections/{c}"),
];

#[tokio::test]
async fn auth_comes_before_validation_on_every_endpoint() {
    let app = api().await;
    for (method, path) in ENDPOINTS {
        // A malformed id: auth must answer first.
        let path = path.replace("{c}", "not-a-uuid").replace("{j}", "nope");
        let (status, body) = app.call_with_key(method, &path, None, None).await;
        assert_detail(status, &body, StatusCode::UNAUTHORIZED);
        let (status, body) = app
            .call_with_key(method, &path, None, Some("sw_unknown"))
            .await;
        assert_detail(status, &body, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn header_name_is_case_insensitive_and_revoked_keys_are_refused() {
    let app = api().await;
    let response = app
        .http
        .get(format!("{}/source-connections", app.url))
        .header("X-API-KEY", &app.key)
        .send()
        .await
        .map(|r| r.status());
    assert_eq!(response.ok(), Some(StatusCode::OK));

    let db = app.db().await;
    let other_key = "sw_test_to_revoke";
    syncway_store::api_keys::ensure_organization_with_key(&db, "default", other_key)
        .await
        .unwrap();
    let (status, _) = app
        .call_with_key("GET", "/source-connections", None, Some(other_key))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        syncway_store::api_keys::revoke(&db, other_key)
            .await
            .unwrap_or(false)
    );
    // The run route checks the key in its own statement: same answers.
    let run = format!("/source-connections/{}/run", uuid::Uuid::new_v4());
    for (method, path) in [("GET", "/source-connections"), ("POST", run.as_str())] {
        let (status, body) = app.call_with_key(method, path, None, Some(other_key)).await;
        assert_detail(status, &body, StatusCode::FORBIDDEN);
    }
    db.execute(
        "UPDATE api_keys SET revoked_at = NULL, expires_at = now() - interval '1 second'
         WHERE key_hash = $1",
        &[&syncway_store::api_keys::digest(other_key)],
    )
    .await
    .unwrap();
    // The run route checks the key in its own statement: same answers.
    let run = format!("/source-connections/{}/run", uuid::Uuid::new_v4());
    for (method, path) in [("GET", "/source-connections"), ("POST", run.as_str())] {
        let (status, body) = app.call_with_key(method, path, None, Some(other_key)).await;
        assert_detail(status, &body, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn run_rejects_bad_ids_and_booleans_with_422() {
    let app = api().await;
    let (status, body) = app.call("POST", "/source-connections/123/run", None).await;
    assert_invalid(status, &body, json!(["path", "source_connection_id"]));
    let id = Uuid::new_v4();
    for bad in ["maybe", "2", "", "tru"] {
        let (status, body) = app
            .call(
                "POST",
                &format!("/source-connections/{id}/run?force_full_sync={bad}"),
                None,
            )
            .await;
        assert_invalid(status, &body, json!(["query", "force_full_sync"]));
    }
}

#[tokio::test]
async fn run_answers_404_for_unknown_and_foreign_connections_and_409_when_busy() {
    let app = api().await;
    let (status, body) = app
        .call(
            "POST",
            &format!("/source-connections/{}/run", Uuid::new_v4()),
            None,
        )
        .await;
    assert_detail(status, &body, StatusCode::NOT_FOUND);

    let connection = app.stub_connection(json!({}), false).await;
    // Another organization cannot see it.
    let db = app.db().await;
    syncway_store::api_keys::ensure_organization_with_key(&db, "other", "sw_other_org")
        .await
        .unwrap();
    for (method, path) in [
        ("POST", format!("/source-connections/{connection}/run")),
        ("GET", format!("/source-connections/{connection}")),
        ("GET", format!("/source-connections/{connection}/jobs")),
        ("DELETE", format!("/source-connections/{connection}")),
    ] {
        let (status, body) = app
            .call_with_key(method, &path, None, Some("sw_other_org"))
            .await;
        assert_detail(status, &body, StatusCode::NOT_FOUND);
    }

    // Accepted in any case and any boolean spelling; then busy (no worker).
    let upper = connection.to_string().to_uppercase();
    let (status, job) = app
        .call(
            "POST",
            &format!("/source-connections/{upper}/run?force_full_sync=YES"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["source_connection_id"], connection.to_string());
    let (status, body) = app
        .call(
            "POST",
            &format!("/source-connections/{connection}/run"),
            None,
        )
        .await;
    assert_detail(status, &body, StatusCode::CONFLICT);
}

#[tokio::test]
async fn job_endpoints_answer_404_422_and_409() {
    let app = api().await;
    let connection = app.stub_connection(json!({}), false).await;
    let other = app.stub_connection(json!({}), false).await;
    let job = app.run(connection, false).await;

    for limit in ["0", "1001", "ten", "-1"] {
        let (status, body) = app
            .call(
                "GET",
                &format!("/source-connections/{connection}/jobs?limit={limit}"),
                None,
            )
            .await;
        assert_invalid(status, &body, json!(["query", "limit"]));
    }
    let (status, body) = app
        .call(
            "GET",
            &format!("/source-connections/{}/jobs", Uuid::new_v4()),
            None,
        )
        .await;
    assert_detail(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .call(
            "GET",
            &format!("/source-connections/{connection}/jobs/xyz"),
            None,
        )
        .await;
    assert_invalid(status, &body, json!(["path", "job_id"]));
    // The job exists, but not under this connection.
    for path in [
        format!("/source-connections/{other}/jobs/{job}"),
        format!("/source-connections/{connection}/jobs/{}", Uuid::new_v4()),
    ] {
        let (status, body) = app.call("GET", &path, None).await;
        assert_detail(status, &body, StatusCode::NOT_FOUND);
        let (status, body) = app.call("POST", &format!("{path}/cancel"), None).await;
        assert_detail(status, &body, StatusCode::NOT_FOUND);
    }

    // Pending -> cancelled at once; a second cancel conflicts.
    let (status, cancelled) = app
        .call(
            "POST",
            &format!("/source-connections/{connection}/jobs/{job}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["completed_at"].is_string());
    assert!(cancelled["started_at"].is_null());
    assert!(cancelled["duration_seconds"].is_null());
    let (status, body) = app
        .call(
            "POST",
            &format!("/source-connections/{connection}/jobs/{job}/cancel"),
            None,
        )
        .await;
    assert_detail(status, &body, StatusCode::CONFLICT);
    // The slot is free again.
    app.run(connection, false).await;
}

#[tokio::test]
async fn collections_validate_and_conflict() {
    let app = api().await;
    let (status, body) = app.call_raw("POST", "/collections", "{\"name\": ").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    let (status, body) = app.call_raw("POST", "/collections", "").await;
    assert_invalid(status, &body, json!(["body"]));
    let (status, body) = app.call_raw("POST", "/collections", "[1, 2]").await;
    assert_invalid(status, &body, json!(["body"]));
    let (status, body) = app.call("POST", "/collections", Some(json!({}))).await;
    assert_invalid(status, &body, json!(["body", "name"]));
    let (status, body) = app
        .call("POST", "/collections", Some(json!({"name": 12})))
        .await;
    assert_invalid(status, &body, json!(["body", "name"]));
    let (status, body) = app
        .call("POST", "/collections", Some(json!({"name": "  "})))
        .await;
    assert_invalid(status, &body, json!(["body", "name"]));
    let (status, body) = app
        .call(
            "POST",
            "/collections",
            Some(json!({"name": "Docs", "readable_id": "Bad Id!"})),
        )
        .await;
    assert_invalid(status, &body, json!(["body", "readable_id"]));

    let (status, created) = app
        .call(
            "POST",
            "/collections",
            Some(json!({"name": "Docs", "readable_id": "docs-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    for field in [
        "id",
        "name",
        "readable_id",
        "organization_id",
        "created_at",
        "modified_at",
        "status",
    ] {
        assert!(created[field].is_string(), "{field} in {created}");
    }
    assert_eq!(created["vector_size"], 0);
    assert_eq!(created["embedding_model_name"], "none");
    let (status, body) = app
        .call(
            "POST",
            "/collections",
            Some(json!({"name": "Again", "readable_id": "docs-1"})),
        )
        .await;
    assert_detail(status, &body, StatusCode::CONFLICT);
    let (status, fetched) = app.call("GET", "/collections/docs-1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);
    let (status, body) = app.call("GET", "/collections/nope-nope", None).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app.call("GET", "/collections/%FF%FE", None).await;
    assert_invalid(status, &body, json!(["path"]));
    let (status, body) = app
        .call(
            "GET",
            &format!("/source-connections/%FF{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_invalid(status, &body, json!(["path"]));
}

#[tokio::test]
async fn source_connections_validate_their_input() {
    let app = api().await;
    let collection = app.create_collection().await;
    let create = |body: Value| app.call("POST", "/source-connections", Some(body));

    let (status, body) = create(json!({"readable_collection_id": collection})).await;
    assert_invalid(status, &body, json!(["body", "short_name"]));
    let (status, body) =
        create(json!({"short_name": "nope", "readable_collection_id": collection})).await;
    assert_invalid(status, &body, json!(["body", "short_name"]));
    let (status, body) = create(json!({
        "short_name": "stub", "readable_collection_id": collection, "config": {"entity_count": "many"}
    }))
    .await;
    assert_invalid(status, &body, json!(["body", "config", "entity_count"]));
    let (status, body) = create(json!({
        "short_name": "stub", "readable_collection_id": collection, "config": {"colour": "red"}
    }))
    .await;
    assert_invalid(status, &body, json!(["body", "config", "colour"]));
    assert_eq!(body["detail"][0]["type"], "extra_forbidden");
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .is_some_and(|m| m.contains("colour")),
        "{body}"
    );
    let (status, body) = create(json!({
        "short_name": "stub", "readable_collection_id": collection, "schedule": {"cron": "every day"}
    }))
    .await;
    assert_invalid(status, &body, json!(["body", "schedule", "cron"]));
    let (status, body) = create(json!({
        "short_name": "stub", "readable_collection_id": collection, "schedule": {"continuous": "yes"}
    }))
    .await;
    assert_invalid(status, &body, json!(["body", "schedule", "continuous"]));
    let (status, body) =
        create(json!({"short_name": "stub", "readable_collection_id": "missing-one"})).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND);

    let (status, created) = create(json!({
        "short_name": "stub", "readable_collection_id": collection, "name": "Mine",
        "description": "test", "schedule": {"cron": "*/5 * * * *", "continuous": true},
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        created["config"]["entity_count"], 100,
        "defaults are filled in"
    );
    assert_eq!(created["schedule"]["cron"], "*/5 * * * *");
    assert_eq!(created["schedule"]["continuous"], true);
    for field in ["cursor_field", "cursor_value"] {
        assert!(
            created["schedule"].get(field).is_some_and(Value::is_null),
            "{field}"
        );
    }
    // A schedule: its next run is real (tests/it/schedules.rs).
    assert!(
        created["schedule"]["next_run"].is_string(),
        "{}",
        created["schedule"]
    );
    assert_eq!(
        created["sync"],
        json!({"total_runs": 0, "successful_runs": 0, "failed_runs": 0, "last_job": null})
    );
    let connection = crate::harness::id_of(&created);

    let path = format!("/source-connections/{connection}");
    let (status, body) = app
        .call(
            "PATCH",
            &path,
            Some(json!({"config": {"payload_bytes": -5}})),
        )
        .await;
    assert_invalid(status, &body, json!(["body", "config", "payload_bytes"]));
    let (status, body) = app.call("PATCH", &path, Some(json!({"name": ""}))).await;
    assert_invalid(status, &body, json!(["body", "name"]));
    let (status, patched) = app
        .call("PATCH", &path, Some(json!({"name": "Renamed"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["description"], "test");

    let unknown = format!("/source-connections/{}", Uuid::new_v4());
    for method in ["GET", "PATCH", "DELETE"] {
        let (status, body) = app.call(method, &unknown, Some(json!({}))).await;
        assert_detail(status, &body, StatusCode::NOT_FOUND);
    }
    for query in ["limit=0", "limit=x", "skip=-1"] {
        let (status, body) = app
            .call("GET", &format!("/source-connections?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_contract_bodies() {
    let app = api().await;
    let (status, body) = app.call("GET", "/nowhere", None).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .call(
            "PUT",
            &format!("/source-connections/{}/run", Uuid::new_v4()),
            None,
        )
        .await;
    assert_detail(status, &body, StatusCode::METHOD_NOT_ALLOWED);
    let response = app
        .http
        .post(format!("{}/collections", app.url))
        .header("x-api-key", &app.key)
        .body(vec![b'x'; 3 * 1024 * 1024])
        .send()
        .await
        .map(|r| r.status());
    assert_eq!(response.ok(), Some(StatusCode::PAYLOAD_TOO_LARGE));
}

#[tokio::test]
async fn health_endpoints_need_no_key() {
    let app = api().await;
    let (status, _) = app.call_with_key("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let ready =
        crate::harness::eventually("readyz to answer 200", crate::harness::DEADLINE, || async {
            let (status, body) = app.call_with_key("GET", "/readyz", None, None).await;
            (status == StatusCode::OK).then_some(body)
        })
        .await;
    assert_eq!(ready["postgres"], "ok");
}
