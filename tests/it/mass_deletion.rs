//! The mass-deletion guard: a full sync that would delete more than its
//! connection's `max_delete_fraction` of what is stored fails, deleting
//! nothing, unless the run is let through with `allow_mass_deletion`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv, counts};

/// The API and a worker whose guard applies from `min` stored entities.
async fn app_guarding_from(min: i64) -> TestApp {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.sync.mass_delete_min_entities = min)
        .await;
    app
}

async fn set_source(app: &TestApp, connection: Uuid, fields: Value) {
    let (status, body) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(fields),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_full_sync_that_would_delete_most_entities_fails_and_deletes_nothing() {
    let app = app_guarding_from(5).await;
    // Not continuous: every run is a full sync.
    let connection = app
        .stub_connection(json!({"entity_count": 10}), false)
        .await;
    assert_eq!(counts(&app.sync(connection, false).await), [10, 0, 0, 0]);
    assert_eq!(app.connection(connection).await["max_delete_fraction"], 0.5);

    // The source answers only 4 of its 10 entities (say, a filter gone
    // wrong): 6 of 10 stored would go, over the default half.
    set_source(&app, connection, json!({"config": {"entity_count": 4}})).await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    let details = &job["error_details"];
    assert_eq!(details["kind"], "mass_deletion", "{job}");
    assert_eq!(details["would_delete"], 6, "{job}");
    assert_eq!(details["stored"], 10, "{job}");
    assert_eq!(details["max_delete_fraction"], 0.5, "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("allow_mass_deletion")),
        "{job}"
    );
    assert_eq!(job["entities_deleted"], 0, "{job}");
    assert_eq!(
        app.entity_count(connection).await,
        10,
        "nothing was deleted"
    );

    // One run let through deletes them.
    let (status, body) = app
        .call(
            "POST",
            &format!(
                "/source-connections/{connection}/run?force_full_sync=true&allow_mass_deletion=true"
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job = app
        .finished_job(connection, crate::harness::id_of(&body))
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [0, 0, 6, 0]);
    assert_eq!(app.entity_count(connection).await, 4);

    // The next run is guarded again: 4 → 1 would delete 3 of 4... but 4
    // stored is under the floor of 5, so it goes through.
    set_source(&app, connection, json!({"config": {"entity_count": 1}})).await;
    assert_eq!(counts(&app.sync(connection, false).await), [0, 0, 3, 0]);
}

#[tokio::test]
async fn a_connections_fraction_sets_its_guard_and_one_disables_it() {
    let app = app_guarding_from(5).await;
    let connection = app
        .stub_connection(json!({"entity_count": 10}), false)
        .await;
    app.sync(connection, false).await;
    // Within the fraction: 3 of 10 go.
    set_source(
        &app,
        connection,
        json!({"config": {"entity_count": 7}, "max_delete_fraction": 0.3}),
    )
    .await;
    assert_eq!(counts(&app.sync(connection, false).await), [0, 0, 3, 0]);
    // Over it: 2 of 7 is more than 0.25 of 7.
    set_source(
        &app,
        connection,
        json!({"config": {"entity_count": 5}, "max_delete_fraction": 0.25}),
    )
    .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["error_details"]["kind"], "mass_deletion", "{job}");
    // 1 disables the guard: everything may go.
    set_source(
        &app,
        connection,
        json!({"config": {"entity_count": 0}, "max_delete_fraction": 1}),
    )
    .await;
    assert_eq!(counts(&app.sync(connection, false).await), [0, 0, 7, 0]);
    for bad in [json!(0), json!(-0.5), json!(1.5), json!("half")] {
        let (status, body) = app
            .call(
                "PATCH",
                &format!("/source-connections/{connection}"),
                Some(json!({ "max_delete_fraction": bad })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "max_delete_fraction"]),
            "{body}"
        );
    }
}
