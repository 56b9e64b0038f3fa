//! The console (CONTRACT.md §12) in a real browser, as an operator: sign
//! in, every page shows what the JSON routes give, a job's page follows
//! it live to completed, cancel and redrive from the pages, pauses, no
//! serious accessibility violation on any page at 1280×800 or 390×844,
//! sign out. The screenshots README shows are saved on the way.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::console_steps::{
    another_organization_s_job, auto_refresh, bulk_cancel, cancel_from_the_page, connection, json,
    live_progress, pause_and_lift, redrive_from_the_page, schedule_paused_and_resumed, sign_in,
};
use crate::harness::browser::Browser;
use crate::harness::{DEADLINE, TestApp, TestEnv, eventually};

/// The API with a fast snapshot and one worker with a fast heartbeat.
async fn app() -> TestApp {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |settings| {
        settings.metrics.snapshot_interval_ms = 200;
    })
    .await;
    app.add_worker(|settings| settings.worker.heartbeat_seconds = 0.2)
        .await;
    app
}

/// The overview's cards equal `/admin/queue` read at the same moment (read
/// again until a page and an answer agree: the snapshot moves).
async fn overview_matches_the_json(app: &TestApp, browser: &Browser) {
    eventually(
        "the overview to agree with /admin/queue",
        DEADLINE,
        || async {
            browser.open("/console/overview").await;
            browser.heading("Overview").await;
            let before = json(app, "/admin/queue").await;
            let shown = [
                browser.figure("Workers alive").await,
                browser.figure("Dead letters").await,
                browser.figure("Outbox backlog").await,
                browser.figure("Jobs pending").await,
                browser.figure("Jobs running").await,
            ];
            let after = json(app, "/admin/queue").await;
            let expected = |q: &Value| {
                [
                    q["workers"].as_array().map_or(0, Vec::len).to_string(),
                    q["dead_letter"].to_string(),
                    q["outbox_pending"].to_string(),
                    q["jobs"]["pending"].to_string(),
                    q["jobs"]["running"].to_string(),
                ]
            };
            (expected(&before) == shown && expected(&after) == shown && shown[0] == "1")
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_operator_sees_and_steers_the_deployment_in_a_browser() {
    let app = app().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (status, body) = app
        .call(
            "POST",
            "/webhooks/subscriptions",
            Some(json!({"url": format!("{}/hook", receiver.uri()), "event_types": ["sync.completed"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let finished = connection(&app, json!({"entity_count": 7})).await;
    let done = app.sync(finished, false).await;
    assert_eq!(done["status"], "completed", "{done}");

    let browser = Browser::start(&app.url).await;
    browser
        .run("operator", async |browser| {
            sign_in(browser, &app.key).await;
            browser.heading("Overview").await;
            assert!(!browser.path().await.contains(&app.key), "the key in a URL");
            overview_matches_the_json(&app, browser).await;
            browser.assert_accessible("overview").await;
            browser.screenshot("overview").await;

            // Jobs: the search's page, as /admin/jobs gives it.
            browser.open("/console/jobs").await;
            browser.heading("Jobs").await;
            let listed = json(&app, "/admin/jobs?limit=50").await;
            let first = listed["items"][0]["id"].as_str().expect("a job").to_owned();
            let link = browser.text_at("//table//tbody/tr[1]/td[1]").await;
            assert!(first.starts_with(&link), "{first} vs {link}");
            browser.assert_accessible("jobs").await;
            browser.screenshot("jobs").await;
            // Filters live in the URL; an empty result says so.
            browser.open("/console/jobs?status=failed").await;
            browser.wait_shows("No jobs match: status = failed.").await;

            // Connections: the entity count the connection's JSON gives.
            browser.open("/console/connections").await;
            browser.heading("Connections").await;
            let entities = json(&app, &format!("/source-connections/{finished}")).await["entities"]
                ["total_entities"]
                .to_string();
            let shown = browser
                .text_at(&format!("//tr[@id='c-{finished}']/td[6]"))
                .await;
            assert_eq!(shown, entities);
            browser.assert_accessible("connections").await;
            browser.screenshot("connections").await;
            schedule_paused_and_resumed(&app, browser).await;

            // Workers.
            browser.open("/console/workers").await;
            browser.heading("Workers").await;
            let alive = json(&app, "/admin/queue").await["workers"]
                .as_array()
                .map_or(0, Vec::len);
            browser
                .wait_shows(&format!(
                    "{alive} worker{} alive",
                    if alive == 1 { "" } else { "s" }
                ))
                .await;
            browser.assert_accessible("workers").await;

            // Audit log: the newest entry, as /admin/audit-log has it.
            browser.open("/console/audit").await;
            browser.heading("Audit log").await;
            let log = json(&app, "/admin/audit-log?limit=50").await;
            let action = log["items"][0]["action"]
                .as_str()
                .expect("an entry")
                .to_owned();
            assert_eq!(browser.text_at("//table//tbody/tr[1]/td[2]").await, action);
            browser.assert_accessible("audit log").await;

            // Webhooks: the subscription's health and its delivery.
            browser.open("/console/webhooks").await;
            browser.heading("Webhooks").await;
            eventually("the delivery shown", DEADLINE, || async {
                browser.open("/console/webhooks").await;
                browser.shows("success").await.then_some(())
            })
            .await;
            let subscriptions = json(&app, "/webhooks/subscriptions").await;
            let health = browser
                .text_at("//dt[normalize-space()='Health']/following-sibling::dd[1]")
                .await;
            assert_eq!(
                Some(health.as_str()),
                subscriptions[0]["health_status"].as_str()
            );
            browser.assert_accessible("webhooks").await;

            another_organization_s_job(&app, browser).await;
            auto_refresh(&app, browser).await;
            live_progress(&app, browser).await;
            cancel_from_the_page(&app, browser).await;
            redrive_from_the_page(&app, browser).await;
            pause_and_lift(&app, browser).await;
            bulk_cancel(&app, browser).await;

            // A phone's screen.
            browser
                .client
                .set_window_size(390, 844)
                .await
                .expect("resizing");
            browser.open("/console/overview").await;
            browser.heading("Overview").await;
            browser.assert_accessible("overview at 390x844").await;
            browser.screenshot("overview-phone").await;
            browser.open("/console/jobs").await;
            browser.assert_accessible("jobs at 390x844").await;

            // Signing out ends the session: pages lead to the sign-in again.
            browser.click("Sign out").await;
            browser.heading("Sign in to the syncway console").await;
            browser.open("/console/jobs").await;
            browser.heading("Sign in to the syncway console").await;
            assert!(browser.path().await.starts_with("/console/sign-in"));
        })
        .await;
}
