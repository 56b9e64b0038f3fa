//! The console in a real browser, as a member of one organization: it sees
//! its own jobs only (another organization's job is not found, even by its
//! URL), operator pages are refused, a form whose CSRF token was tampered
//! with is refused and does nothing, and revoking the key ends the session.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::console_steps::sign_in;
use crate::harness::browser::Browser;
use crate::harness::{DEADLINE, TestApp, eventually};
use crate::steering::{job_with_key, other_organization};

async fn jobs_of(app: &TestApp, key: &str, connection: Uuid) -> Vec<Value> {
    let (status, body) = app
        .call_with_key(
            "GET",
            &format!("/source-connections/{connection}/jobs"),
            None,
            Some(key),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

async fn finished(app: &TestApp, key: &str, connection: Uuid) {
    eventually("the job finished", DEADLINE, || async {
        let jobs = jobs_of(app, key, connection).await;
        jobs.iter()
            .all(|job| job["status"] == "completed")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_member_sees_only_its_organization_and_forged_or_revoked_access_is_refused() {
    let app = TestApp::spawn().await;
    let (_, key_b) = other_organization(&app, "console-b").await;
    let (_, key_c) = other_organization(&app, "console-c").await;
    let (connection_c, job_c) = job_with_key(&app, &key_c, json!({"entity_count": 3})).await;
    let (connection_b, job_b) = job_with_key(&app, &key_b, json!({"entity_count": 3})).await;
    finished(&app, &key_b, connection_b).await;
    finished(&app, &key_c, connection_c).await;

    let browser = Browser::start(&app.url).await;
    browser
        .run("member", async |browser| {
            sign_in(browser, &key_b).await;
            browser.heading("Overview").await;
            assert_eq!(browser.figure("Completed in the last 24 h").await, "1");
            assert!(!browser.shows("Workers").await, "a member sees the operator's pages");
            browser.assert_accessible("a member's overview").await;
            browser.screenshot("member-overview").await;

            // Its own job is listed; the other organization's is not.
            browser.open("/console/jobs").await;
            browser.heading("Jobs").await;
            let source = browser.client.source().await.expect("the page");
            assert!(source.contains(&job_b.to_string()));
            assert!(!source.contains(&job_c.to_string()));
            // Nor found by its URL.
            browser.open(&format!("/console/jobs/{connection_c}/{job_c}")).await;
            browser.heading("Not found").await;
            // The operator's pages are refused.
            browser.open("/console/dead-letters").await;
            browser.heading("Not allowed").await;

            // A form with a forged CSRF token: refused, nothing runs.
            browser.open("/console/connections").await;
            browser.heading("Connections").await;
            browser
                .client
                .execute(
                    "document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged'); return true;",
                    vec![],
                )
                .await
                .expect("tampering with the form");
            browser.click("Run now").await;
            browser.heading("Refused").await;
            assert_eq!(jobs_of(&app, &key_b, connection_b).await.len(), 1);

            // Revoking the key ends the session at its next page.
            let (_, keys) = app.call_with_key("GET", "/api-keys", None, Some(&key_b)).await;
            let id = keys[0]["id"].as_str().expect("the key's id").to_owned();
            let (status, _) = app
                .call_with_key("DELETE", &format!("/api-keys/{id}"), None, Some(&key_b))
                .await;
            assert_eq!(status, StatusCode::OK);
            browser.open("/console/jobs").await;
            browser.heading("Sign in to the syncway console").await;
            browser.wait_shows("Your session ended").await;
        })
        .await;
}
