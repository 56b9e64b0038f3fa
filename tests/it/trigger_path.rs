//! The path of a trigger through both binaries: a run accepted, queued,
//! claimed and completed with live counts, listed and started at creation.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, counts};

#[tokio::test]
async fn a_trigger_runs_a_stub_sync_to_completion() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 250}), false)
        .await;

    let (status, job) = app
        .call(
            "POST",
            &format!("/source-connections/{connection}/run"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["source_connection_id"], connection.to_string());
    for field in [
        "started_at",
        "completed_at",
        "duration_seconds",
        "error",
        "error_category",
        "error_details",
    ] {
        assert!(
            job.get(field).is_some_and(Value::is_null),
            "{field} in {job}"
        );
    }
    assert_eq!(counts(&job), [0, 0, 0, 0]);

    let job_id = crate::harness::id_of(&job);
    let done = app.finished_job(connection, job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [250, 0, 0, 0]);
    let started = done["started_at"]
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    let completed = done["completed_at"]
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    let (Some(started), Some(completed)) = (started, completed) else {
        panic!("timestamps missing in {done}");
    };
    assert!(
        done["completed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let duration = done["duration_seconds"].as_f64().unwrap_or(-1.0);
    assert!(
        (duration - (completed - started).num_microseconds().unwrap_or(0) as f64 / 1e6).abs()
            < 1e-6
    );
    assert_eq!(app.entity_count(connection).await, 250);

    let body = app.connection(connection).await;
    assert_eq!(body["status"], "active");
    assert_eq!(body["entities"]["total_entities"], 250);
    assert_eq!(body["sync"]["total_runs"], 1);
    assert_eq!(body["sync"]["successful_runs"], 1);
    assert_eq!(body["sync"]["last_job"]["id"], job_id.to_string());
    assert_eq!(body["schedule"]["cursor_value"], 249);

    let jobs = app.jobs(connection).await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
    assert_eq!(jobs[0], done);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_and_limited() {
    let app = TestApp::spawn().await;
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let job = app.run(connection, false).await;
        app.finished_job(connection, job).await;
        ids.push(job.to_string());
    }
    let jobs = app.jobs(connection).await;
    let listed: Vec<&str> = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_str())
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    let (_, jobs) = app
        .call(
            "GET",
            &format!("/source-connections/{connection}/jobs?limit=1"),
            None,
        )
        .await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
    assert_eq!(jobs[0]["id"], ids[0].as_str());
}

#[tokio::test]
async fn counts_grow_while_the_job_runs() {
    let app = TestApp::spawn().await;
    // 400 entities at 5 ms each: about 2 s, in batches of 40.
    let connection = app
        .stub_connection(
            json!({"entity_count": 400, "delay_ms_per_entity": 5}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let running = app
        .job_where(
            connection,
            job,
            "running with some entities counted",
            |job| {
                job["status"] == "running"
                    && job["entities_inserted"].as_i64().is_some_and(|n| n > 0)
            },
        )
        .await;
    assert!(
        running["entities_inserted"].as_i64().unwrap_or(0) < 400,
        "{running}"
    );
    assert!(running["started_at"].is_string());
    assert!(running["completed_at"].is_null());
    assert!(running["duration_seconds"].is_null());
    let done = app.finished_job(connection, job).await;
    assert_eq!(counts(&done), [400, 0, 0, 0]);
}

#[tokio::test]
async fn sync_immediately_triggers_a_first_job() {
    let app = TestApp::spawn().await;
    let collection = app.create_collection().await;
    let (status, body) = app
        .call(
            "POST",
            "/source-connections",
            Some(json!({
                "short_name": "stub",
                "readable_collection_id": collection,
                "config": {"entity_count": 5},
                "sync_immediately": true,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Stub connection");
    let connection = crate::harness::id_of(&body);
    let Some(job) = body["sync"]["last_job"]["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
    else {
        panic!("no first job in {body}");
    };
    assert_eq!(
        app.finished_job(connection, job).await["entities_inserted"],
        5
    );
}
