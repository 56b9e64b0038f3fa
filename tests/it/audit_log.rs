//! The audit log (CONTRACT.md §9): every request that changes something is
//! recorded once, with its outcome, the key it was made with (a revoked
//! key's refused attempt too), its request id and client address; never a
//! secret; an organization sees its own entries, an operator everyone's.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, id_of};

/// The organization's whole audit log, as `key` reads it.
async fn audit_log(app: &TestApp, path: &str, key: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = app
            .call_with_key("GET", &format!("{path}?limit=3{after}"), None, Some(key))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        items.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return items,
        }
    }
}

#[tokio::test]
async fn every_change_is_recorded_once_with_its_outcome_and_no_secret() {
    let app = TestApp::spawn_with(0).await;
    let (status, created) = app
        .call("POST", "/api-keys", Some(json!({"name": "ci"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let key = created["key"].as_str().expect("the new key").to_owned();
    let key_id = created["id"].as_str().expect("its id").to_owned();
    let call = |method: &'static str, path: String, body: Option<Value>| {
        let key = key.clone();
        let app = &app;
        async move { app.call_with_key(method, &path, body, Some(&key)).await }
    };

    let (_, collection) = call(
        "POST",
        "/collections".into(),
        Some(json!({"name": "audit"})),
    )
    .await;
    let (status, connection) = call(
        "POST",
        "/source-connections".into(),
        Some(json!({
            "short_name": "stub",
            "readable_collection_id": collection["readable_id"],
            "config": {"entity_count": 5},
            "authentication": {"credentials": {"token": "hunter2-secret"}},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{connection}");
    let connection = id_of(&connection);
    let (status, job) = call(
        "POST",
        format!("/source-connections/{connection}/run"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let job = id_of(&job);
    let (status, _) = call(
        "POST",
        format!("/source-connections/{connection}/run"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let missing = Uuid::new_v4();
    let (status, _) = call("POST", format!("/source-connections/{missing}/run"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        "POST",
        format!("/source-connections/{connection}/jobs/{job}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        "PATCH",
        format!("/source-connections/{connection}"),
        Some(json!({"name": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A read is not recorded.
    let (status, _) = call("GET", format!("/source-connections/{connection}"), None).await;
    assert_eq!(status, StatusCode::OK);
    // The operator revokes the key; its next request is refused, and
    // recorded with the key it was made with.
    let (status, _) = app
        .call("DELETE", &format!("/api-keys/{key_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call("DELETE", format!("/source-connections/{connection}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let entries = audit_log(&app, "/audit-log", &app.key).await;
    let seen: Vec<(String, i64, bool)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["status"].as_i64().unwrap_or_default(),
                e["key_id"] == key_id.as_str(),
            )
        })
        .collect();
    let expected = [
        ("api_key.create", 200, false),
        ("collection.create", 200, true),
        ("source_connection.create", 200, true),
        ("source_connection.run", 200, true),
        ("source_connection.run", 409, true),
        ("source_connection.run", 404, true),
        ("sync_job.cancel", 200, true),
        ("source_connection.update", 422, true),
        ("api_key.revoke", 200, false),
        ("source_connection.delete", 403, true),
    ];
    let expected: Vec<(String, i64, bool)> = expected
        .iter()
        .map(|(a, s, k)| ((*a).to_owned(), *s, *k))
        .collect();
    assert_eq!(seen, expected, "{entries:#?}");
    // Targets: what was created or acted on.
    assert_eq!(entries[0]["target_id"], key_id.as_str());
    assert_eq!(entries[2]["target_id"], connection.to_string());
    assert_eq!(entries[3]["target_id"], connection.to_string());
    assert_eq!(entries[5]["target_id"], missing.to_string());
    assert_eq!(entries[6]["target_id"], job.to_string());
    assert_eq!(entries[8]["target_id"], key_id.as_str());
    for entry in &entries {
        assert!(entry["request_id"].is_string(), "{entry}");
        assert_eq!(entry["client_address"], "127.0.0.1", "{entry}");
        assert!(entry["key_prefix"].is_string(), "{entry}");
    }
    assert_eq!(entries[1]["role"], "member");
    assert_eq!(entries[0]["role"], "operator");
    // No secret: not the keys, not the credentials.
    let text = serde_json::to_string(&entries).expect("entries as text");
    for secret in [key.as_str(), app.key.as_str(), "hunter2-secret"] {
        assert!(!text.contains(secret), "a secret in the audit log");
    }
    // Filters.
    let (_, runs) = app
        .call("GET", "/audit-log?action=source_connection.run", None)
        .await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(3), "{runs}");
    let (_, about_job) = app
        .call("GET", &format!("/audit-log?target_id={job}"), None)
        .await;
    assert_eq!(about_job["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_organization_sees_its_own_entries_and_an_operator_sees_all() {
    let app = TestApp::spawn_with(0).await;
    let other = format!("sw_other_{}", Uuid::new_v4().simple());
    syncway_store::api_keys::ensure_organization_with_key(&app.db().await, "other", &other)
        .await
        .expect("another organization");
    let (status, _) = app
        .call_with_key(
            "POST",
            "/collections",
            Some(json!({"name": "theirs"})),
            Some(&other),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call("POST", "/collections", Some(json!({"name": "ours"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let theirs = audit_log(&app, "/audit-log", &other).await;
    assert_eq!(theirs.len(), 1, "{theirs:#?}");
    let ours = audit_log(&app, "/audit-log", &app.key).await;
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_ne!(theirs[0]["organization_id"], ours[0]["organization_id"]);
    let all = audit_log(&app, "/admin/audit-log", &app.key).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    // A member key is not an operator's.
    let (status, _) = app
        .call_with_key("GET", "/admin/audit-log", None, Some(&other))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
