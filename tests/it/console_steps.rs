//! The steps of the console's operator test (`console.rs`), each a thing a
//! person does in the browser, checked against the JSON routes; and the
//! helpers both console test modules use.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::browser::Browser;
use crate::harness::{DEADLINE, TestApp, eventually};

pub async fn sign_in(browser: &Browser, key: &str) {
    browser.open("/console").await;
    browser.heading("Sign in to the syncway console").await;
    browser.assert_accessible("the sign-in page").await;
    browser.fill("API key", key).await;
    browser.click("Sign in").await;
}

pub async fn json(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.call("GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

pub async fn connection(app: &TestApp, config: Value) -> Uuid {
    app.stub_connection(config, false).await
}

/// A counter the console's script keeps on `<body>`.
async fn body_count(browser: &Browser, name: &str) -> u64 {
    let value = browser
        .client
        .execute(
            &format!("return Number(document.body.dataset.{name} || 0);"),
            vec![],
        )
        .await
        .expect("reading the page's counter");
    value.as_u64().unwrap_or(0)
}

/// Auto-refresh is off until chosen; on, the page's main region follows
/// the deployment without a reload; it waits while a dialog is open or the
/// tab is hidden.
pub async fn auto_refresh(app: &TestApp, browser: &Browser) {
    browser.open("/console/overview").await;
    browser.heading("Overview").await;
    let selector = browser
        .client
        .find(fantoccini::Locator::XPath(
            "//label[normalize-space()='Auto-refresh']/following::select[1]",
        ))
        .await
        .expect("the auto-refresh selector");
    assert_eq!(
        selector.prop("value").await.expect("its value").as_deref(),
        Some("0")
    );
    selector.select_by_label("5 s").await.expect("choosing 5 s");
    let (status, body) = app
        .call(
            "PUT",
            "/admin/pauses/all",
            Some(json!({"reason": "refresh check"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("the pause to appear without a reload", DEADLINE, || async {
        (body_count(browser, "refreshed").await > 0 && browser.shows("refresh check").await)
            .then_some(())
    })
    .await;
    // A dialog open: the ticks pass, the page stays as it is.
    browser
        .client
        .execute(
            "document.getElementById('confirm').showModal(); return true;",
            vec![],
        )
        .await
        .expect("opening the dialog");
    let refreshed = body_count(browser, "refreshed").await;
    let skipped = body_count(browser, "refreshSkipped").await;
    eventually("a tick to wait for the dialog", DEADLINE, || async {
        (body_count(browser, "refreshSkipped").await > skipped).then_some(())
    })
    .await;
    assert_eq!(body_count(browser, "refreshed").await, refreshed);
    browser
        .client
        .execute(
            "document.getElementById('confirm').close(); return true;",
            vec![],
        )
        .await
        .expect("closing the dialog");
    // A hidden tab (the page told it is hidden, as a browser tells a
    // background tab): the ticks pass, the page stays as it is.
    browser
        .client
        .execute(
            "Object.defineProperty(document, 'hidden', {value: true, configurable: true}); return true;",
            vec![],
        )
        .await
        .expect("hiding the page");
    let refreshed = body_count(browser, "refreshed").await;
    let skipped = body_count(browser, "refreshSkipped").await;
    eventually("a tick to wait for the hidden tab", DEADLINE, || async {
        (body_count(browser, "refreshSkipped").await > skipped).then_some(())
    })
    .await;
    assert_eq!(body_count(browser, "refreshed").await, refreshed);
    browser
        .client
        .execute("delete document.hidden; return true;", vec![])
        .await
        .expect("showing the page again");
    eventually("refreshing again once visible", DEADLINE, || async {
        (body_count(browser, "refreshed").await > refreshed).then_some(())
    })
    .await;
    let (status, _) = app.call("DELETE", "/admin/pauses/all", None).await;
    assert_eq!(status, StatusCode::OK);
    selector
        .select_by_label("Off")
        .await
        .expect("turning it off");
}

/// "Run now" leads to the new job's page, which follows it over the event
/// stream (auto-refresh is off) through progress to completed.
pub async fn live_progress(app: &TestApp, browser: &Browser) {
    let slow = connection(app, json!({"entity_count": 3000, "delay_ms_per_entity": 2})).await;
    browser.open("/console/connections").await;
    browser.heading("Connections").await;
    let row = format!("//tr[@id='c-{slow}']//button[normalize-space()='Run now']");
    browser
        .client
        .find(fantoccini::Locator::XPath(&row))
        .await
        .expect("the connection's Run now")
        .click()
        .await
        .expect("clicking Run now");
    browser.heading("Job").await;
    let inserted = "//dt[normalize-space()='Inserted']/following-sibling::dd[1]";
    let status = "//dt[normalize-space()='Status']/following-sibling::dd[1]";
    let midway = browser
        .wait_text("progress shown while the job runs", inserted, |text| {
            text.parse::<u64>().is_ok_and(|n| n > 0 && n < 3000)
        })
        .await;
    browser.screenshot("job-running").await;
    browser
        .wait_text("the job shown completed", status, |text| {
            text == "completed"
        })
        .await;
    assert_eq!(
        browser.text_at(inserted).await,
        "3000",
        "after {midway} midway"
    );
    browser.assert_accessible("a job's page").await;
    let path = browser.path().await;
    let job: Uuid = path
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("the job's id in the path");
    let json = app.job(slow, job).await;
    assert_eq!(
        (json["status"].as_str(), json["entities_inserted"].as_i64()),
        (Some("completed"), Some(3000))
    );
    // Retry from the finished job's page (loaded again: the buttons are
    // the page's, the live stream changes only figures).
    browser.open(&path).await;
    browser.click("Retry (run again)").await;
    browser.click("Confirm").await;
    let again = eventually("the new job's page", DEADLINE, || async {
        let now = browser.path().await;
        (now != path && now.starts_with(&format!("/console/jobs/{slow}/"))).then_some(now)
    })
    .await;
    browser.heading("Job").await;
    let jobs = app.jobs(slow).await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(2), "{jobs}");
    assert!(
        again.ends_with(jobs[0]["id"].as_str().expect("the newest job")),
        "{again} {jobs}"
    );
    app.finished_job(
        slow,
        again
            .rsplit('/')
            .next()
            .and_then(|id| id.parse().ok())
            .expect("an id"),
    )
    .await;
}

/// Cancel on a running job's page, confirmed in the dialog.
pub async fn cancel_from_the_page(app: &TestApp, browser: &Browser) {
    let long = connection(
        app,
        json!({"entity_count": 100000, "delay_ms_per_entity": 5}),
    )
    .await;
    let job = app.run(long, false).await;
    app.running_with_data(long, job).await;
    browser.open(&format!("/console/jobs/{long}/{job}")).await;
    browser.heading("Job").await;
    browser.click("Cancel job").await;
    browser.click("Confirm").await;
    eventually("the job cancelled", DEADLINE, || async {
        let body = app.job(long, job).await;
        (body["status"] == "cancelled").then_some(())
    })
    .await;
    browser.open(&format!("/console/jobs/{long}/{job}")).await;
    browser
        .wait_text(
            "the page to show cancelled",
            "//dt[normalize-space()='Status']/following-sibling::dd[1]",
            |t| t == "cancelled",
        )
        .await;
}

/// A job's message dead-lettered while it waits: the page shows the count,
/// the redrive is confirmed, and the job runs.
pub async fn redrive_from_the_page(app: &TestApp, browser: &Browser) {
    let waiting = connection(app, json!({"entity_count": 2})).await;
    let job = Uuid::now_v7();
    app.db()
        .await
        .execute(
            "INSERT INTO sync_jobs (id, source_connection_id) VALUES ($1, $2)",
            &[&job, &waiting],
        )
        .await
        .expect("a pending job without a message");
    let (_amqp, channel) = crate::harness::confirmed_channel().await;
    let dead = syncway_queue::Topology::new(&app.env.namespace).dead_exchange();
    channel
        .basic_publish(
            dead.as_str().into(),
            "".into(),
            lapin::options::BasicPublishOptions::default(),
            &syncway_model::JobMessage::new(job, waiting).encode(),
            lapin::BasicProperties::default(),
        )
        .await
        .expect("publishing")
        .await
        .expect("confirmed");
    eventually("the dead letter on the page", DEADLINE, || async {
        browser.open("/console/dead-letters").await;
        browser.heading("Dead letters").await;
        browser
            .shows("1 message in the dead-letter queue")
            .await
            .then_some(())
    })
    .await;
    browser.assert_accessible("dead letters").await;
    browser.screenshot("dead-letters").await;
    browser.click("Redrive 1 dead letter").await;
    browser.click("Confirm").await;
    eventually("the redrive reported", DEADLINE, || async {
        browser
            .shows("1 dead letter moved back to the jobs queue.")
            .await
            .then_some(())
    })
    .await;
    let done = app.finished_job(waiting, job).await;
    assert_eq!(done["status"], "completed", "{done}");
}

/// A deployment pause set with its reason shows on the overview and in
/// `/admin/pauses`; lifted, it is gone from both.
pub async fn pause_and_lift(app: &TestApp, browser: &Browser) {
    browser.open("/console/pauses").await;
    browser.heading("Pauses").await;
    browser.wait_shows("No pause is in force.").await;
    let scope = browser
        .client
        .find(fantoccini::Locator::XPath(
            "//label[contains(normalize-space(), 'Scope')]//select",
        ))
        .await
        .expect("the scope");
    scope
        .select_by_value("all")
        .await
        .expect("choosing the deployment");
    browser.fill("Reason", "console test maintenance").await;
    browser.click("Pause").await;
    browser.heading("Pauses").await;
    let pauses = json(app, "/admin/pauses").await;
    assert_eq!(pauses[0]["reason"], "console test maintenance", "{pauses}");
    browser.assert_accessible("pauses").await;
    browser.open("/console/overview").await;
    browser.wait_shows("console test maintenance").await;
    browser.open("/console/pauses").await;
    browser.click("Lift").await;
    browser.click("Confirm").await;
    eventually("the pause lifted", Duration::from_secs(10), || async {
        let pauses = json(app, "/admin/pauses").await;
        (pauses == json!([])).then_some(())
    })
    .await;
}

/// A bulk action from a filtered list: the count first, then the task's
/// progress, and the jobs it matched cancelled.
pub async fn bulk_cancel(app: &TestApp, browser: &Browser) {
    // Held by a pause of the organization, three jobs wait.
    let (status, body) = app
        .call(
            "PUT",
            "/pauses/organization",
            Some(json!({"reason": "bulk check"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut held = Vec::new();
    for _ in 0..3 {
        let waiting = connection(app, json!({"entity_count": 1})).await;
        held.push((waiting, app.run(waiting, false).await));
    }
    browser.open("/console/jobs?status=pending").await;
    browser.heading("Jobs").await;
    browser.wait_shows("3 jobs on this page").await;
    browser.click("Cancel matching jobs…").await;
    browser.heading("Confirm a bulk action").await;
    browser.wait_shows("3 jobs match status = pending").await;
    browser
        .assert_accessible("a bulk action's confirmation")
        .await;
    browser.click("Yes, cancel 3 jobs").await;
    browser.heading("Bulk task").await;
    eventually("the task to finish", DEADLINE, || async {
        browser.client.refresh().await.ok()?;
        let status = browser
            .text_at("//dt[normalize-space()='Status']/following-sibling::dd[1]")
            .await;
        let done = browser
            .text_at("//dt[normalize-space()='Done']/following-sibling::dd[1]")
            .await;
        (status == "completed" && done == "3").then_some(())
    })
    .await;
    browser.assert_accessible("a bulk task's page").await;
    for (connection, job) in held {
        let body = app.job(connection, job).await;
        assert_eq!(body["status"], "cancelled", "{body}");
    }
    let (status, _) = app.call("DELETE", "/pauses/organization", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// A connection's schedule paused and resumed from the Connections page,
/// as its JSON then says.
pub async fn schedule_paused_and_resumed(app: &TestApp, browser: &Browser) {
    let rare = crate::schedules::scheduled(app, json!({"schedule": {"cron": "0 3 29 2 *"}})).await;
    let paused = async |expected: bool| {
        let body = json(app, &format!("/source-connections/{rare}")).await;
        assert_eq!(body["schedule"]["paused"], expected, "{body}");
    };
    browser.open("/console/connections").await;
    let button = |label: &str| format!("//tr[@id='c-{rare}']//button[normalize-space()='{label}']");
    browser
        .client
        .find(fantoccini::Locator::XPath(&button("Pause schedule")))
        .await
        .expect("the connection's Pause schedule")
        .click()
        .await
        .expect("clicking it");
    browser.wait_shows("Schedule paused.").await;
    paused(true).await;
    browser
        .wait_text(
            "the row to offer a resume",
            &button("Resume schedule"),
            |_| true,
        )
        .await;
    browser
        .client
        .find(fantoccini::Locator::XPath(&button("Resume schedule")))
        .await
        .expect("the connection's Resume schedule")
        .click()
        .await
        .expect("clicking it");
    browser.wait_shows("Schedule resumed.").await;
    paused(false).await;
}

/// Another organization's job, opened by an operator: its figures and
/// timeline as `/admin/jobs/{id}` gives them, without its buttons.
pub async fn another_organization_s_job(app: &TestApp, browser: &Browser) {
    let (_, key) = crate::steering::other_organization(app, "console-other").await;
    let (connection, job) =
        crate::steering::job_with_key(app, &key, json!({"entity_count": 4})).await;
    eventually("the other job finished", DEADLINE, || async {
        let body = json(app, &format!("/admin/jobs/{job}")).await;
        (body["status"] == "completed").then_some(())
    })
    .await;
    browser
        .open(&format!("/console/jobs/{connection}/{job}"))
        .await;
    browser.heading("Job").await;
    browser
        .wait_shows("This job belongs to another organization")
        .await;
    let inserted = browser
        .text_at("//dt[normalize-space()='Inserted']/following-sibling::dd[1]")
        .await;
    assert_eq!(
        inserted,
        json(app, &format!("/admin/jobs/{job}")).await["entities_inserted"].to_string()
    );
    let last = json(app, &format!("/admin/jobs/{job}/timeline")).await["items"]
        .as_array()
        .and_then(|items| items.last().cloned())
        .expect("a timeline");
    browser
        .wait_shows(last["message"].as_str().expect("a message"))
        .await;
    assert!(!browser.shows("Retry (run again)").await);
}
