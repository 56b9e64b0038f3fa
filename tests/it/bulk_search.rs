//! Bulk actions by filter and job search (CONTRACT.md §11).

use std::collections::HashSet;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, eventually, id_of};
use crate::steering::{job_with_key, other_organization};

/// `n` stub connections in one collection, each with a triggered job.
async fn pending_jobs(app: &TestApp, n: usize) -> Vec<(Uuid, Uuid)> {
    let collection = app.create_collection().await;
    futures_util::stream::iter(0..n)
        .map(|_| {
            let collection = collection.clone();
            async move {
                let (status, body) = app
                    .call(
                        "POST",
                        "/source-connections",
                        Some(
                            json!({"short_name": "stub", "readable_collection_id": collection,
                                    "config": {"entity_count": 1}}),
                        ),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let connection = id_of(&body);
                (connection, app.run(connection, false).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn statuses(app: &TestApp, jobs: &[(Uuid, Uuid)]) -> Vec<String> {
    let ids: Vec<Uuid> = jobs.iter().map(|(_, job)| *job).collect();
    app.db()
        .await
        .query("SELECT status FROM sync_jobs WHERE id = ANY($1)", &[&ids])
        .await
        .expect("reading statuses")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn task_done(app: &TestApp, path: &str, key: &str) -> Value {
    eventually("the bulk task to complete", DEADLINE, || async {
        let (status, task) = app.call_with_key("GET", path, None, Some(key)).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        (task["status"] == "completed").then_some(task)
    })
    .await
}

#[tokio::test]
async fn a_bulk_cancel_cancels_exactly_what_its_filter_matched() {
    // No workers: every job stays pending.
    let app = TestApp::spawn_with(0).await;
    let early = pending_jobs(&app, 10).await;
    let (_, key_b) = other_organization(&app, "b").await;
    let theirs = job_with_key(&app, &key_b, json!({"entity_count": 1})).await;
    let cut = chrono::Utc::now();
    let targets = pending_jobs(&app, 500).await;
    let end = chrono::Utc::now();
    // The filter names the 500; a later job would match the first three
    // conditions too.
    let request = json!({
        "action": "cancel",
        "filter": {"status": "pending", "short_name": "stub", "created_after": cut.to_rfc3339()},
    });
    let mut dry = request.clone();
    dry["dry_run"] = json!(true);
    let (status, counted) = app.call("POST", "/jobs/bulk", Some(dry.clone())).await;
    assert_eq!(status, StatusCode::OK, "{counted}");
    assert_eq!(counted["matched"], 500);

    let (status, submitted) = app.call("POST", "/jobs/bulk", Some(request.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    assert_eq!(submitted["matched"], 500);
    let task_id = submitted["task_id"].as_str().expect("a task id").to_owned();
    // A job created after the submission is not the task's.
    let later = pending_jobs(&app, 1).await;
    let task = task_done(&app, &format!("/tasks/{task_id}"), &app.key).await;
    assert_eq!(
        (task["done"].as_i64(), task["failed"].as_i64()),
        (Some(500), Some(0)),
        "{task}"
    );
    assert!(
        statuses(&app, &targets)
            .await
            .iter()
            .all(|s| s == "cancelled")
    );
    assert!(statuses(&app, &early).await.iter().all(|s| s == "pending"));
    assert!(statuses(&app, &later).await.iter().all(|s| s == "pending"));
    assert!(
        statuses(&app, &[theirs])
            .await
            .iter()
            .all(|s| s == "pending")
    );

    // Sending it again acts on what is left: only the later job.
    let (status, again) = app.call("POST", "/jobs/bulk", Some(dry)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["matched"], 1, "the job created after the submission");
    let mut bounded = request.clone();
    bounded["filter"]["created_before"] = json!(end.to_rfc3339());
    let (status, again) = app.call("POST", "/jobs/bulk", Some(bounded)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["matched"], 0);
    // Another organization's key cannot read the task.
    let (status, _) = app
        .call_with_key("GET", &format!("/tasks/{task_id}"), None, Some(&key_b))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // One audit entry per submission, none for the dry run.
    let bulk_entries: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'sync_job.bulk'",
            &[],
        )
        .await
        .expect("reading the audit log")
        .get(0);
    assert_eq!(bulk_entries, 2);

    // Bad input is named.
    for (body, place) in [
        (json!({"action": "delete"}), "action"),
        (
            json!({"action": "cancel", "filter": {"status": "done"}}),
            "status",
        ),
        (
            json!({"action": "cancel", "filter": {"organization_id": Uuid::new_v4().to_string()}}),
            "organization_id",
        ),
        (
            json!({"action": "cancel", "filter": {"stauts": "pending"}}),
            "stauts",
        ),
        (
            json!({"action": "cancel", "filter": {"created_after": "yesterday"}}),
            "created_after",
        ),
    ] {
        let (status, error) = app.call("POST", "/jobs/bulk", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert!(error.to_string().contains(place), "{body}: {error}");
    }
}

#[tokio::test]
async fn the_operator_acts_across_organizations_and_members_may_not() {
    let app = TestApp::spawn_with(0).await;
    let (other, key_b) = other_organization(&app, "b").await;
    let theirs = job_with_key(&app, &key_b, json!({"entity_count": 1})).await;
    let ours = pending_jobs(&app, 2).await;
    let (status, _) = app
        .call_with_key(
            "POST",
            "/admin/jobs/bulk",
            Some(json!({"action": "cancel"})),
            Some(&key_b),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, submitted) = app
        .call(
            "POST",
            "/admin/jobs/bulk",
            Some(json!({"action": "cancel", "filter": {"organization_id": other.to_string()}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    assert_eq!(submitted["matched"], 1);
    let task_id = submitted["task_id"].as_str().expect("a task id");
    task_done(&app, &format!("/admin/tasks/{task_id}"), &app.key).await;
    assert_eq!(statuses(&app, &[theirs]).await, ["cancelled"]);
    assert!(statuses(&app, &ours).await.iter().all(|s| s == "pending"));
}

#[tokio::test]
async fn retry_and_run_trigger_each_connection_once() {
    // One attempt: a transient failure fails the job.
    let mut app = TestApp::with_api(crate::harness::TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.retry.max_attempts = 1)
        .await;
    let failing = app
        .stub_jobs(3, json!({"entity_count": 2, "fail_after": 1}))
        .await;
    let fine = app.stub_jobs(1, json!({"entity_count": 2})).await;
    for (connection, job) in failing.iter().chain(&fine) {
        app.finished_job(*connection, *job).await;
    }
    let retry = json!({"action": "retry", "filter": {"status": "failed"}});
    let mut dry = retry.clone();
    dry["dry_run"] = json!(true);
    let (_, counted) = app.call("POST", "/jobs/bulk", Some(dry)).await;
    assert_eq!(counted["matched"], 3, "{counted}");
    let (status, submitted) = app.call("POST", "/jobs/bulk", Some(retry.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let task = task_done(
        &app,
        &format!("/tasks/{}", submitted["task_id"].as_str().expect("id")),
        &app.key,
    )
    .await;
    assert_eq!(task["done"], 3, "{task}");
    for (connection, _) in &failing {
        let jobs = app.jobs(*connection).await;
        assert_eq!(jobs.as_array().map(Vec::len), Some(2), "{jobs}");
        assert_eq!(jobs[0]["trigger"], "api");
    }
    let (_, fine_jobs) = app
        .call(
            "GET",
            &format!("/source-connections/{}/jobs", fine[0].0),
            None,
        )
        .await;
    assert_eq!(fine_jobs.as_array().map(Vec::len), Some(1), "{fine_jobs}");

    // Run: every matching connection once, none with an active job twice.
    eventually("the retries to end", DEADLINE, || async {
        let (_, page) = app.call("GET", "/jobs?status=running", None).await;
        let (_, pending) = app.call("GET", "/jobs?status=pending", None).await;
        (page["items"].as_array().is_some_and(Vec::is_empty)
            && pending["items"].as_array().is_some_and(Vec::is_empty))
        .then_some(())
    })
    .await;
    let (status, submitted) = app
        .call(
            "POST",
            "/jobs/bulk",
            Some(json!({"action": "run", "filter": {"short_name": "stub"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    assert_eq!(submitted["matched"], 4, "{submitted}");
}

#[tokio::test]
async fn search_filters_pages_and_keeps_to_the_keys_organization() {
    let app = TestApp::spawn_with(0).await;
    let (other, key_b) = other_organization(&app, "b").await;
    let theirs = job_with_key(&app, &key_b, json!({"entity_count": 1})).await;
    let ours = pending_jobs(&app, 25).await;
    let connection = ours[0].0;

    // Pages of 10, newest first, by keyset: every job once.
    let mut seen = Vec::new();
    let mut path = "/jobs?status=pending&limit=10".to_owned();
    loop {
        let (status, page) = app.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items");
        seen.extend(items.iter().map(id_of));
        match page["next"].as_str() {
            Some(next) => path = format!("/jobs?status=pending&limit=10&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    let ids: Vec<Uuid> = ours.iter().map(|(_, job)| *job).collect();
    let newest_first: Vec<Uuid> = app
        .db()
        .await
        .query(
            "SELECT id FROM sync_jobs WHERE id = ANY($1) ORDER BY created_at DESC, id DESC",
            &[&ids],
        )
        .await
        .expect("ordering the jobs")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(seen, newest_first, "newest first");
    assert!(!seen.contains(&theirs.1), "another organization's job");

    for (query, expected) in [
        (format!("source_connection_id={connection}"), 1),
        ("trigger=api".to_owned(), 25),
        ("trigger=schedule".to_owned(), 0),
        ("status=failed".to_owned(), 0),
        ("short_name=stub&status=pending".to_owned(), 25),
        ("error_category=timeout".to_owned(), 0),
        (
            format!("created_before={}", urlencode("2000-01-01T00:00:00Z")),
            0,
        ),
    ] {
        let (status, page) = app.call("GET", &format!("/jobs?{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(expected),
            "{query}"
        );
    }
    for query in [
        "status=done",
        "after=nonsense",
        "limit=0",
        "organization_id=x",
        "color=red",
    ] {
        let (status, body) = app.call("GET", &format!("/jobs?{query}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
    }

    // The operator searches any organization; a member key may not.
    let (status, page) = app
        .call("GET", &format!("/admin/jobs?organization_id={other}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(id_of(&page["items"][0]), theirs.1);
    let (_, all) = app.call("GET", "/admin/jobs?limit=1000", None).await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(26));
    let (status, _) = app
        .call_with_key("GET", "/admin/jobs", None, Some(&key_b))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, own) = app.call_with_key("GET", "/jobs", None, Some(&key_b)).await;
    assert_eq!(own["items"].as_array().map(Vec::len), Some(1), "{own}");
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A")
}
