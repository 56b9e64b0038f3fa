//! Job event streams (CONTRACT.md §8): syncway's own (`status`, `progress`,
//! `end`, ids that grow, `Last-Event-ID`) and Airweave's
//! (`/sync/job/{id}/subscribe`), against a real API and worker.

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use syncway_cli::sse::{SseEvent, SseParser};
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, TestEnv};

/// Opens a stream: once its response (the headers) arrived, the stream
/// watches its job.
async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .get(format!("{}{path}", app.url))
        .header("x-api-key", &app.key);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.expect("the stream's response")
}

/// Reads a stream's events until it ends or `until` says stop.
async fn read(
    response: reqwest::Response,
    mut until: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut bytes = response.bytes_stream();
    let read = tokio::time::timeout(DEADLINE, async {
        while let Some(chunk) = bytes.next().await {
            for event in parser.feed(&chunk.expect("a chunk")) {
                let stop = until(&event);
                events.push(event);
                if stop {
                    return;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the stream did not end: {events:?}");
    events
}

/// Opens a stream; returns its status, and (for 200) its events.
async fn follow(
    app: &TestApp,
    path: &str,
    last_event_id: Option<&str>,
    until: impl FnMut(&SseEvent) -> bool,
) -> (StatusCode, Vec<SseEvent>) {
    let response = open(app, path, last_event_id).await;
    let status = response.status();
    if status != StatusCode::OK {
        return (status, Vec::new());
    }
    (status, read(response, until).await)
}

fn job(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data).expect("the job as JSON")
}

#[tokio::test]
async fn a_stream_follows_a_job_from_its_start_to_its_end_with_live_counts() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 600, "delay_ms_per_entity": 2}),
            false,
        )
        .await;
    let job_id = app.run(connection, false).await;
    let path = format!("/source-connections/{connection}/jobs/{job_id}/events");
    let (status, events) = follow(&app, &path, None, |_| false).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(kinds.first(), Some(&"status"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "end").count(), 1);
    // Ids grow with every event.
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e.id.as_deref().expect("an id").parse().expect("a number"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Live counts: some event shows the job part-way.
    let partial = events.iter().map(job).any(|j| {
        let inserted = j["entities_inserted"].as_i64().unwrap_or(0);
        j["status"] == "running" && inserted > 0 && inserted < 600
    });
    assert!(partial, "no event showed the job part-way: {kinds:?}");
    let last = job(events.last().expect("an event"));
    assert_eq!(last["status"], "completed");
    assert_eq!(last["entities_inserted"], 600);
    assert_eq!(
        last,
        app.job(connection, job_id).await,
        "the end is the job as stored"
    );
}

#[tokio::test]
async fn a_late_subscriber_gets_the_current_state_and_a_resumed_stream_skips_what_it_saw() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let connection = app.stub_connection(json!({}), false).await;
    let job_id = app.run(connection, false).await;
    let path = format!("/source-connections/{connection}/jobs/{job_id}/events");
    // No worker: the job stays pending. The first event is its state.
    let (_, first) = follow(&app, &path, None, |_| true).await;
    assert_eq!(first[0].event.as_deref(), Some("status"));
    assert_eq!(job(&first[0])["status"], "pending");
    let seen = first[0].id.clone().expect("an id");
    // Resumed at that id, nothing is sent until the job changes: cancel it
    // once the stream is open.
    let resumed = open(&app, &path, Some(&seen)).await;
    assert_eq!(resumed.status(), StatusCode::OK);
    assert_eq!(app.cancel(connection, job_id).await.0, StatusCode::OK);
    let events = read(resumed, |_| false).await;
    assert_eq!(
        events.len(),
        1,
        "only the change after the resumed id: {events:?}"
    );
    assert_eq!(events[0].event.as_deref(), Some("end"));
    assert_eq!(job(&events[0])["status"], "cancelled");
    // A late subscriber to a terminal job gets its end at once.
    let (_, late) = follow(&app, &path, None, |_| false).await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].event.as_deref(), Some("end"));
    // Even when resuming from its last id: the stream ends with `end`.
    let end_id = late[0].id.clone().expect("an id");
    let (_, again) = follow(&app, &path, Some(&end_id), |_| false).await;
    assert_eq!(again.len(), 1);
}

#[tokio::test]
async fn unknown_or_foreign_jobs_are_404_before_any_stream() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let connection = app.stub_connection(json!({}), false).await;
    let job_id = app.run(connection, false).await;
    let other = Uuid::new_v4();
    for path in [
        format!("/source-connections/{connection}/jobs/{other}/events"),
        format!("/source-connections/{other}/jobs/{job_id}/events"),
        format!("/sync/job/{other}/subscribe"),
    ] {
        let (status, body) = app.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body["detail"].is_string());
    }
    let foreign = format!("sw_{}", Uuid::new_v4().simple());
    syncway_store::api_keys::ensure_organization_with_key(&app.db().await, "other", &foreign)
        .await
        .expect("another organization");
    let path = format!("/sync/job/{job_id}/subscribe");
    let (status, _) = app.call_with_key("GET", &path, None, Some(&foreign)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call_with_key("GET", &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn airweaves_subscribe_stream_sends_connected_then_progress_to_the_end() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 400, "delay_ms_per_entity": 2}),
            false,
        )
        .await;
    let job_id = app.run(connection, false).await;
    let path = format!("/sync/job/{job_id}/subscribe");
    let (status, events) = follow(&app, &path, None, |_| false).await;
    assert_eq!(status, StatusCode::OK);
    let data: Vec<Value> = events.iter().map(job).collect();
    assert_eq!(data[0], json!({"type": "connected", "job_id": job_id}));
    assert!(events.iter().all(|e| e.event.is_none() && e.id.is_none()));
    let progress: Vec<&Value> = data
        .iter()
        .filter(|d| d.get("inserted").is_some())
        .collect();
    assert!(progress.len() >= 2, "{data:?}");
    for update in &progress {
        for field in [
            "updated",
            "deleted",
            "kept",
            "skipped",
            "entities_encountered",
            "last_update_timestamp",
        ] {
            assert!(update.get(field).is_some(), "{field} in {update}");
        }
    }
    let last = progress.last().expect("a last update");
    assert_eq!(last["status"], "completed");
    assert_eq!(last["inserted"], 400);
    assert!(
        progress[..progress.len() - 1]
            .iter()
            .all(|p| p["status"].is_null())
    );
}
