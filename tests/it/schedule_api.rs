//! The schedule in the API (CONTRACT.md §5): defaults, 422s naming the
//! field, and `next_run` moved at once by PATCH and pause.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use syncway_worker::scheduler::Pass;

use crate::schedules::{ManualClock, app_without_jitter, next_run_of, pass, scheduled, scheduler};

#[tokio::test]
async fn patch_and_pause_move_next_run_at_once() {
    let app = app_without_jitter(0).await;
    let connection = scheduled(&app, json!({"schedule": {"cron": "0 3 * * *"}})).await;
    let next_run = next_run_of;
    let body = app.connection(connection).await;
    let at_three = next_run(&body).expect("a next run");
    assert_eq!(at_three.format("%H:%M").to_string(), "03:00");
    assert!(at_three > Utc::now() && at_three <= Utc::now() + TimeDelta::days(1));
    assert_eq!(body["schedule"]["timezone"], "UTC");
    assert_eq!(body["schedule"]["paused"], false);
    assert!(body["schedule"]["full_sync_every"].is_null());
    let patch = |schedule: Value| {
        let app = &app;
        async move {
            let (status, body) = app
                .call(
                    "PATCH",
                    &format!("/source-connections/{connection}"),
                    Some(json!({ "schedule": schedule })),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let body = patch(json!({"cron": "0 4 * * *", "timezone": "Asia/Tokyo"})).await;
    let at_four_tokyo = next_run(&body).expect("a next run");
    assert_eq!(
        at_four_tokyo.format("%H:%M").to_string(),
        "19:00",
        "04:00 JST"
    );
    let body = patch(json!({"paused": true})).await;
    assert!(body["schedule"]["next_run"].is_null(), "{body}");
    assert_eq!(body["schedule"]["cron"], "0 4 * * *", "the cron is kept");
    // Paused: nothing is due, even a year on.
    let scheduler = scheduler(&app, ManualClock::at(Utc::now() + TimeDelta::days(365)));
    assert_eq!(pass(&scheduler).await, Pass::default());
    let body = patch(json!({"paused": false})).await;
    assert_eq!(next_run(&body), Some(at_four_tokyo));
    let body = patch(json!({"cron": null})).await;
    assert!(body["schedule"]["cron"].is_null() && body["schedule"]["next_run"].is_null());
    // A PATCH that leaves the timing alone keeps the plan.
    let body = patch(json!({"cron": "0 5 * * *"})).await;
    let planned = next_run(&body);
    let body = patch(json!({"cursor_field": "updated_at"})).await;
    assert_eq!(next_run(&body), planned);
}

#[tokio::test]
async fn schedule_fields_are_validated_and_defaulted() {
    let app = app_without_jitter(0).await;
    let collection = app.create_collection().await;
    let create = |schedule: Value| {
        let app = &app;
        let collection = collection.clone();
        async move {
            app.call(
                "POST",
                "/source-connections",
                Some(
                    json!({"short_name": "stub", "readable_collection_id": collection,
                            "schedule": schedule}),
                ),
            )
            .await
        }
    };
    for (schedule, field) in [
        (json!({"cron": "every day"}), "cron"),
        (json!({"cron": "0 3 * * * *"}), "cron"),
        (json!({"cron": "0 0 31 2 *"}), "cron"),
        (json!({"cron": "*/30 * * * *"}), "cron"),
        (
            json!({"cron": "0 3 * * *", "timezone": "Europe/Nowhere"}),
            "timezone",
        ),
        (json!({"timezone": "UTC+2"}), "timezone"),
        (
            json!({"continuous": true, "full_sync_every": "soon"}),
            "full_sync_every",
        ),
        (
            json!({"continuous": true, "full_sync_every": "10s"}),
            "full_sync_every",
        ),
    ] {
        let (status, body) = create(schedule.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{schedule}: {body}"
        );
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "schedule", field]),
            "{schedule}: {body}"
        );
    }
    // Continuous and nothing named: every five minutes, a full sync a day.
    let (_, continuous) = create(json!({"continuous": true})).await;
    assert_eq!(continuous["schedule"]["cron"], "*/5 * * * *");
    assert_eq!(continuous["schedule"]["full_sync_every"], "24h");
    assert!(continuous["schedule"]["next_run"].is_string());
    // Continuous, but an explicit null: no schedule.
    let (_, none) = create(json!({"continuous": true, "cron": null})).await;
    assert!(none["schedule"]["cron"].is_null() && none["schedule"]["next_run"].is_null());
    // Not continuous and nothing named: as before, no schedule.
    let (_, manual) = create(json!({})).await;
    assert!(manual["schedule"]["cron"].is_null() && manual["schedule"]["next_run"].is_null());
    assert!(manual["schedule"]["full_sync_every"].is_null());
    // A continuous schedule may run every minute.
    let (status, body) = create(json!({"continuous": true, "cron": "* * * * *"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
