//! Steering (CONTRACT.md §11): pauses at every level, why a job waits,
//! and who may pause what.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, eventually, id_of};

/// A second organization with a member key, made in the store.
pub async fn other_organization(app: &TestApp, name: &str) -> (Uuid, String) {
    let key = format!("sw_test_{name}_{}", Uuid::new_v4().simple());
    let organization =
        syncway_store::api_keys::ensure_organization_with_key(&app.db().await, name, &key)
            .await
            .expect("another organization");
    (organization, key)
}

/// A stub connection and its triggered job, made with `key`.
pub async fn job_with_key(app: &TestApp, key: &str, config: Value) -> (Uuid, Uuid) {
    let (status, collection) = app
        .call_with_key(
            "POST",
            "/collections",
            Some(json!({"name": "Steering"})),
            Some(key),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{collection}");
    let (status, body) = app
        .call_with_key(
            "POST",
            "/source-connections",
            Some(
                json!({"short_name": "stub", "readable_collection_id": collection["readable_id"],
                        "config": config}),
            ),
            Some(key),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let connection = id_of(&body);
    let (status, job) = app
        .call_with_key(
            "POST",
            &format!("/source-connections/{connection}/run"),
            None,
            Some(key),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    (connection, id_of(&job))
}

/// Waits until the job says it waits for `code`, still pending.
async fn waits_for(app: &TestApp, key: &str, connection: Uuid, job: Uuid, code: &str) -> Value {
    eventually(&format!("the job to wait for {code}"), DEADLINE, || async {
        let (_, body) = app
            .call_with_key(
                "GET",
                &format!("/source-connections/{connection}/jobs/{job}"),
                None,
                Some(key),
            )
            .await;
        (body["waiting_reason"]["code"] == code).then_some(body)
    })
    .await
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    app.db()
        .await
        .query("SELECT action FROM audit_log ORDER BY id", &[])
        .await
        .expect("reading the audit log")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_paused_deployment_claims_nothing_until_it_is_resumed() {
    let app = TestApp::spawn().await;
    let (status, pause) = app
        .call(
            "PUT",
            "/admin/pauses/all",
            Some(json!({"reason": "incident 42"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pause}");
    assert_eq!(pause["scope"], "all");
    assert_eq!(pause["reason"], "incident 42");
    assert!(pause["created_by_key_prefix"].is_string(), "{pause}");
    let (_, pauses) = app.call("GET", "/admin/pauses", None).await;
    assert_eq!(pauses.as_array().map(Vec::len), Some(1), "{pauses}");

    // Triggers still answer 200; every job waits, held, never claimed.
    let jobs = app.stub_jobs(5, json!({"entity_count": 3})).await;
    for (connection, job) in &jobs {
        let waiting = waits_for(&app, &app.key, *connection, *job, "paused_all").await;
        assert_eq!(waiting["status"], "pending", "{waiting}");
        assert!(waiting["started_at"].is_null(), "{waiting}");
        assert!(
            waiting["waiting_reason"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("paused")),
            "{waiting}"
        );
    }
    let attempts: i64 = app
        .db()
        .await
        .query_one("SELECT coalesce(sum(attempt), 0)::int8 FROM sync_jobs", &[])
        .await
        .expect("counting attempts")
        .get(0);
    assert_eq!(attempts, 0, "a job was claimed while paused");

    let (status, resumed) = app.call("DELETE", "/admin/pauses/all", None).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    for (connection, job) in &jobs {
        let done = app.finished_job(*connection, *job).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert!(done["waiting_reason"].is_null(), "{done}");
    }
    let (status, _) = app.call("DELETE", "/admin/pauses/all", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "resuming twice");
    let actions = audit_actions(&app).await;
    assert!(
        actions.contains(&"deployment.pause".to_owned())
            && actions.contains(&"deployment.resume".to_owned()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_organizations_pause_leaves_the_others_flowing() {
    let app = TestApp::spawn().await;
    let (other, key_b) = other_organization(&app, "b").await;

    // B pauses itself with its own (member) key.
    let (status, pause) = app
        .call_with_key(
            "PUT",
            "/pauses/organization",
            Some(json!({"reason": "migrating"})),
            Some(&key_b),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pause}");
    assert_eq!(pause["organization_id"], other.to_string());
    let (b_connection, b_job) = job_with_key(&app, &key_b, json!({"entity_count": 2})).await;
    waits_for(&app, &key_b, b_connection, b_job, "paused_organization").await;

    // A's jobs run meanwhile.
    let (a_connection, a_job) = app.stub_jobs(1, json!({"entity_count": 2})).await[0];
    let done = app.finished_job(a_connection, a_job).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, b_now) = app
        .call_with_key(
            "GET",
            &format!("/source-connections/{b_connection}/jobs/{b_job}"),
            None,
            Some(&key_b),
        )
        .await;
    assert_eq!(b_now["status"], "pending", "{b_now}");

    // A member key may pause neither the deployment nor another
    // organization, nor resume what the operator paused for it.
    let a_org: Uuid = app
        .db()
        .await
        .query_one(
            "SELECT organization_id FROM source_connections WHERE id = $1",
            &[&a_connection],
        )
        .await
        .expect("organization a")
        .get(0);
    for path in [
        "/admin/pauses/all".to_owned(),
        format!("/admin/pauses/organizations/{a_org}"),
    ] {
        let (status, body) = app.call_with_key("PUT", &path, None, Some(&key_b)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (_, pauses) = app.call("GET", "/admin/pauses", None).await;
    assert_eq!(pauses.as_array().map(Vec::len), Some(1), "{pauses}");

    let (status, _) = app
        .call_with_key("DELETE", "/pauses/organization", None, Some(&key_b))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, done) = eventually("B's job to complete", DEADLINE, || async {
        let (status, body) = app
            .call_with_key(
                "GET",
                &format!("/source-connections/{b_connection}/jobs/{b_job}"),
                None,
                Some(&key_b),
            )
            .await;
        (body["status"] == "completed").then_some((status, body))
    })
    .await;
    assert!(done["waiting_reason"].is_null(), "{done}");
    let actions = audit_actions(&app).await;
    assert!(
        actions.contains(&"organization.pause".to_owned())
            && actions.contains(&"organization.resume".to_owned()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn the_operator_pauses_one_organization_and_may_cancel_what_runs() {
    let app = TestApp::spawn().await;
    let (other, key_b) = other_organization(&app, "b").await;
    // B's job runs for a while (200 entities, 20 ms each).
    let (connection, job) = job_with_key(
        &app,
        &key_b,
        json!({"entity_count": 200, "delay_ms_per_entity": 20}),
    )
    .await;
    eventually("B's job to run", DEADLINE, || async {
        let (_, body) = app
            .call_with_key(
                "GET",
                &format!("/source-connections/{connection}/jobs/{job}"),
                None,
                Some(&key_b),
            )
            .await;
        (body["status"] == "running").then_some(())
    })
    .await;
    let (status, pause) = app
        .call(
            "PUT",
            &format!("/admin/pauses/organizations/{other}?cancel_running=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pause}");
    assert_eq!(pause["reason"], "");
    let ended = eventually("B's job to be cancelled", DEADLINE, || async {
        let (_, body) = app
            .call_with_key(
                "GET",
                &format!("/source-connections/{connection}/jobs/{job}"),
                None,
                Some(&key_b),
            )
            .await;
        (body["status"] == "cancelled").then_some(body)
    })
    .await;
    assert!(ended["entities_inserted"].as_i64() < Some(200), "{ended}");
    // B sees the operator's pause of it; it cannot lift it from /admin.
    let (_, pauses) = app
        .call_with_key("GET", "/pauses", None, Some(&key_b))
        .await;
    assert_eq!(pauses[0]["scope"], "organization", "{pauses}");
    let (status, _) = app
        .call_with_key(
            "DELETE",
            &format!("/admin/pauses/organizations/{other}"),
            None,
            Some(&key_b),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Its own resume lifts only its own pause, which it has none of.
    let (status, _) = app
        .call_with_key("DELETE", "/pauses/organization", None, Some(&key_b))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(pauses[0]["by_operator"], true, "{pauses}");
    let (status, _) = app
        .call(
            "PUT",
            &format!("/admin/pauses/organizations/{}", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown organization");
    let (status, body) = app
        .call(
            "PUT",
            "/admin/pauses/all",
            Some(json!({"reason": "x".repeat(1001)})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A new run of B's waits for the pause; a resume lets it go.
    let (status, again) = app
        .call_with_key(
            "POST",
            &format!("/source-connections/{connection}/run"),
            None,
            Some(&key_b),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = id_of(&again);
    waits_for(&app, &key_b, connection, again, "paused_organization").await;
    let (status, _) = app
        .call(
            "DELETE",
            &format!("/admin/pauses/organizations/{other}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually(
        "the new run to complete",
        Duration::from_secs(30),
        || async {
            let (_, body) = app
                .call_with_key(
                    "GET",
                    &format!("/source-connections/{connection}/jobs/{again}"),
                    None,
                    Some(&key_b),
                )
                .await;
            (body["status"] == "completed").then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_resume_lets_held_jobs_go_in_turns_across_organizations() {
    let mut app = TestApp::spawn().await;
    let (_, key_b) = other_organization(&app, "b").await;
    let (status, _) = app.call("PUT", "/admin/pauses/all", None).await;
    assert_eq!(status, StatusCode::OK);
    // A's six jobs are older than B's two.
    let a_jobs = app.stub_jobs(6, json!({"entity_count": 1})).await;
    let mut b_jobs = Vec::new();
    for _ in 0..2 {
        b_jobs.push(job_with_key(&app, &key_b, json!({"entity_count": 1})).await);
    }
    for (connection, job) in &a_jobs {
        waits_for(&app, &app.key, *connection, *job, "paused_all").await;
    }
    for (connection, job) in &b_jobs {
        waits_for(&app, &key_b, *connection, *job, "paused_all").await;
    }
    // No worker (and no reaper) from here: the release below is the only one.
    if let Some(worker) = app.workers.pop() {
        worker.shutdown().await.expect("the worker stops");
    }
    let mut db = app.db().await;
    syncway_store::pauses::resume(&db, None, true)
        .await
        .expect("lifting the pause");
    let released = syncway_store::jobs::release_unpaused(&mut db, 4)
        .await
        .expect("releasing four");
    let a_oldest: Vec<Uuid> = a_jobs.iter().take(2).map(|(_, job)| *job).collect();
    let b_all: Vec<Uuid> = b_jobs.iter().map(|(_, job)| *job).collect();
    let mut expected: Vec<Uuid> = a_oldest.iter().chain(&b_all).copied().collect();
    let mut got = released.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "each organization's oldest first, in turns");
    let messages: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE job_id = ANY($1)",
            &[&released],
        )
        .await
        .expect("counting messages")
        .get(0);
    assert_eq!(messages, 4, "each released job has its message");
}
