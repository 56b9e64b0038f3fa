//! The console's edges over plain HTTP (what a browser would not let a test
//! forge): a POST from a foreign origin is refused, a wrong key is refused
//! without echoing it, the key never appears in a page or a URL, sessions
//! expire, headers (CSP, cookies) are strict, assets are fingerprinted with
//! Subresource Integrity, and the per-minute samples count the right jobs
//! and go with retention.

use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::TestApp;

/// A client that follows no redirect (the test reads them).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(SET_COOKIE).iter().find_map(|value| {
        let text = value.to_str().ok()?;
        let (pair, _) = text.split_once(';')?;
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("the hidden field") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("its value")
        .to_owned()
}

/// The sign-in form's cookie and CSRF token.
async fn sign_in_form(app: &TestApp) -> (String, String) {
    let form = client()
        .get(format!("{}/console/sign-in", app.url))
        .send()
        .await
        .expect("the form");
    let sign_in_cookie = cookie(form.headers(), "syncway_sign_in").expect("the sign-in cookie");
    let csrf = hidden(&form.text().await.expect("the form's page"), "csrf");
    (sign_in_cookie, csrf)
}

/// A signed-in session: (cookie header, CSRF token, sign-in answer headers).
async fn signed_in(app: &TestApp, key: &str) -> (String, String, HeaderMap) {
    let http = client();
    let (sign_in_cookie, csrf) = sign_in_form(app).await;
    let answer = http
        .post(format!("{}/console/sign-in", app.url))
        .header("cookie", format!("syncway_sign_in={sign_in_cookie}"))
        .header("origin", &app.url)
        .form(&[
            ("key", key),
            ("csrf", &csrf),
            ("next", "/console/connections"),
        ])
        .send()
        .await
        .expect("signing in");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let headers = answer.headers().clone();
    let session = cookie(&headers, "syncway_session").expect("the session cookie");
    let cookie_header = format!("syncway_session={session}");
    let page = http
        .get(format!("{}/console/connections", app.url))
        .header("cookie", &cookie_header)
        .send()
        .await
        .expect("a page");
    let csrf = hidden(&page.text().await.expect("the page"), "csrf");
    (cookie_header, csrf, headers)
}

#[tokio::test]
async fn sessions_are_strict_and_foreign_posts_do_nothing() {
    let app = TestApp::spawn_with(0).await;
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    let http = client();
    let (session, csrf, headers) = signed_in(&app, &app.key).await;

    // The session cookie: HttpOnly, SameSite=Strict, an expiry; the key in
    // no header of the answer.
    let set = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("syncway_session="))
        .expect("the session cookie")
        .to_owned();
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=43200",
        "Path=/console",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert_eq!(
        headers.get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/console/connections")
    );
    assert!(!format!("{headers:?}").contains(&app.key));

    // The page: strict CSP, no inline script, the key nowhere.
    let page = http
        .get(format!("{}/console/connections", app.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("a page");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("a policy")
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("default-src 'none'"),
        "{policy}"
    );
    let html = page.text().await.expect("the page");
    assert!(!html.contains(&app.key));
    assert!(!html.contains("<script>"), "an inline script");

    // Its stylesheet and script: fingerprinted, immutable, with the
    // integrity of what is served.
    for (attribute, tag) in [("href", "<link rel=\"stylesheet\""), ("src", "<script")] {
        let at = html.find(tag).expect("the asset's tag");
        let rest = &html[at..];
        let url = hidden_attr(rest, attribute);
        let integrity = hidden_attr(rest, "integrity");
        let asset = http
            .get(format!("{}{url}", app.url))
            .send()
            .await
            .expect("the asset");
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(
            asset.headers()["cache-control"]
                .to_str()
                .expect("caching")
                .contains("immutable")
        );
        let body = asset.bytes().await.expect("its body");
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
        assert_eq!(integrity, format!("sha256-{digest}"));
    }

    // A POST from another origin, with the right token and cookie: refused,
    // nothing runs.
    let run = format!("{}/console/connections/{connection}/run", app.url);
    let refused = http
        .post(&run)
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .expect("a foreign post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Without the token: refused too.
    let refused = http
        .post(&run)
        .header("cookie", &session)
        .header("origin", &app.url)
        .form(&[("csrf", "")])
        .send()
        .await
        .expect("a post without the token");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.jobs(connection).await.as_array().map(Vec::len), Some(0));
    // From the console's own page: it runs.
    let accepted = http
        .post(&run)
        .header("cookie", &session)
        .header("origin", &app.url)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .expect("the console's post");
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.jobs(connection).await.as_array().map(Vec::len), Some(1));

    // An expired session leads to the sign-in page.
    app.db()
        .await
        .execute(
            "UPDATE console_sessions SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .expect("expiring the sessions");
    let expired = http
        .get(format!("{}/console/overview", app.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("a page");
    assert_eq!(expired.status(), StatusCode::SEE_OTHER);
    let to = expired.headers()[LOCATION]
        .to_str()
        .expect("a location")
        .to_owned();
    assert!(to.starts_with("/console/sign-in"), "{to}");
}

fn hidden_attr(tag: &str, attribute: &str) -> String {
    let marker = format!("{attribute}=\"");
    let start = tag.find(&marker).expect("the attribute") + marker.len();
    tag[start..]
        .split('"')
        .next()
        .expect("its value")
        .to_owned()
}

#[tokio::test]
async fn a_wrong_key_or_a_foreign_sign_in_is_refused_without_echoing_the_key() {
    let app = TestApp::spawn_with(0).await;
    let http = client();
    let (sign_in_cookie, csrf) = sign_in_form(&app).await;
    let wrong = "sw_not_a_key_of_anyone_0123456789";
    let post = |origin: &str, key: &str| {
        http.post(format!("{}/console/sign-in", app.url))
            .header("cookie", format!("syncway_sign_in={sign_in_cookie}"))
            .header("origin", origin)
            .form(&[("key", key), ("csrf", &csrf)])
    };
    let answer = post(&app.url, wrong).send().await.expect("a wrong key");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(cookie(answer.headers(), "syncway_session").is_none());
    let page = answer.text().await.expect("the page");
    assert!(page.contains("That key is not valid"));
    assert!(!page.contains(wrong));
    // The right key from another origin's page: refused.
    let foreign = post("http://evil.example", &app.key)
        .send()
        .await
        .expect("a foreign sign-in");
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(cookie(foreign.headers(), "syncway_session").is_none());
}

#[tokio::test]
async fn samples_count_the_minute_s_jobs_and_expired_sessions_and_old_tasks_go_with_retention() {
    let app = TestApp::spawn_with(0).await;
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    let db = app.db().await;
    // Last minute: one job started and completed, one started and failed,
    // one started and still running; and one finished long before.
    // (Each goes through its transitions, one active job at a time.)
    let minute = "date_trunc('minute', now()) - interval '1 minute' + interval '1 minute'";
    for (status, started, completed) in [
        ("completed", "30 seconds", Some("20 seconds")),
        ("failed", "40 seconds", Some("10 seconds")),
        ("completed", "3 hours", Some("3 hours")),
        ("running", "50 seconds", None),
    ] {
        let job: uuid::Uuid = db
            .query_one(
                "INSERT INTO sync_jobs (id, source_connection_id) VALUES (gen_random_uuid(), $1) RETURNING id",
                &[&connection],
            )
            .await
            .expect("a job")
            .get(0);
        db.execute(
            &format!("UPDATE sync_jobs SET status = 'running', started_at = {minute} - interval '{started}' WHERE id = $1"),
            &[&job],
        )
        .await
        .expect("started");
        if let Some(completed) = completed {
            db.execute(
                &format!("UPDATE sync_jobs SET status = $2, completed_at = {minute} - interval '{completed}' WHERE id = $1"),
                &[&job, &status],
            )
            .await
            .expect("finished");
        }
    }
    let gauges = syncway_store::console::Gauges {
        workers: 2,
        outbox_pending: 5,
        ..Default::default()
    };
    syncway_store::console::sample(&db, &gauges)
        .await
        .expect("a sample");
    // A second process in the same minute writes nothing more.
    syncway_store::console::sample(&db, &syncway_store::console::Gauges::default())
        .await
        .expect("again");
    let samples = syncway_store::console::samples(&db, 24)
        .await
        .expect("the samples");
    assert_eq!(samples.len(), 1);
    let sample = &samples[0];
    assert_eq!((sample.started, sample.completed, sample.failed), (3, 1, 1));
    assert_eq!((sample.workers, sample.outbox_pending), (2, 5));

    // Retention: a sample older than a week and an expired session go.
    db.execute(
        "INSERT INTO console_samples (minute, started, completed, failed, workers, outbox_pending)
         VALUES (now() - interval '8 days', 0, 0, 0, 0, 0)",
        &[],
    )
    .await
    .expect("an old sample");
    db.execute(
        "INSERT INTO console_sessions (token_hash, key_hash, csrf_token, expires_at)
         VALUES ('\\x01', '\\x02', 'x', now() - interval '1 hour')",
        &[],
    )
    .await
    .expect("an expired session");
    // A bulk task finished eight days ago (with an item left): it goes; a
    // running one stays.
    db.batch_execute(
        "INSERT INTO bulk_tasks (id, action, filter, status, matched, finished_at)
         VALUES ('00000000-0000-0000-0000-000000000001', 'cancel', '{}', 'completed', 1,
                 now() - interval '8 days'),
                ('00000000-0000-0000-0000-000000000002', 'cancel', '{}', 'running', 1, NULL);
         INSERT INTO bulk_task_items (task_id, n, target)
         VALUES ('00000000-0000-0000-0000-000000000001', 1, gen_random_uuid())",
    )
    .await
    .expect("bulk tasks");
    let mut client = app.env.db().await;
    let rules = syncway_store::retention::Rules {
        job_days: 0,
        keep_per_connection: 0,
        audit_days: 0,
        webhook_days: 0,
        batch: 100,
    };
    let removed = syncway_store::retention::remove_old_entries(&mut client, rules)
        .await
        .expect("retention")
        .expect("the retention lock");
    assert!(
        removed.rows.contains(&("console_samples", 1)),
        "{:?}",
        removed.rows
    );
    assert!(
        removed.rows.contains(&("bulk_tasks", 1)) && removed.rows.contains(&("bulk_task_items", 1)),
        "{:?}",
        removed.rows
    );
    let left: i64 = db
        .query_one("SELECT count(*) FROM bulk_tasks", &[])
        .await
        .expect("tasks")
        .get(0);
    assert_eq!(left, 1, "the running task stays");
    assert!(
        removed.rows.contains(&("console_sessions", 1)),
        "{:?}",
        removed.rows
    );
    assert_eq!(
        syncway_store::console::samples(&db, 24 * 30)
            .await
            .expect("samples")
            .len(),
        1
    );
}

#[tokio::test]
async fn operators_read_any_organization_s_job_and_timeline_by_its_id() {
    let app = TestApp::spawn().await;
    let (_, member) = crate::steering::other_organization(&app, "console-any").await;
    let (connection, job) =
        crate::steering::job_with_key(&app, &member, json!({"entity_count": 2})).await;
    let done = crate::harness::eventually("the job finished", crate::harness::DEADLINE, || async {
        let (_, body) = app.call("GET", &format!("/admin/jobs/{job}"), None).await;
        (body["status"] == "completed").then_some(body)
    })
    .await;
    assert_eq!(done["source_connection_id"], connection.to_string());
    assert_eq!(done["entities_inserted"], 2);
    let (status, timeline) = app
        .call("GET", &format!("/admin/jobs/{job}/timeline?limit=1"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    assert_eq!(timeline["items"][0]["kind"], "created");
    assert!(timeline["next"].is_string(), "{timeline}");
    // Its own organization's routes still say 404 to the operator's key.
    let (status, _) = app
        .call(
            "GET",
            &format!("/source-connections/{connection}/jobs/{job}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A member key may not; an unknown job is 404.
    for path in [
        format!("/admin/jobs/{job}"),
        format!("/admin/jobs/{job}/timeline"),
    ] {
        let (status, _) = app.call_with_key("GET", &path, None, Some(&member)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, _) = app
        .call(
            "GET",
            &format!("/admin/jobs/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
