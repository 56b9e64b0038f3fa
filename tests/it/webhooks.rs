//! Webhooks (CONTRACT.md §10): subscriptions are the organization's own and
//! pass the egress policy; every job status change is delivered, signed,
//! at least once, with the same `webhook-id` on every try; redirects are
//! never followed; 410 Gone and a long failure streak disable; Retry-After
//! is honoured; a rotated secret signs beside the new one for a day.
//! (Airweave's SDK and the `standardwebhooks` package check the wire in
//! sdk.rs.)

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use syncway_webhooks::signature::Secret;
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::harness::{TestApp, TestEnv, eventually};

const DEADLINE: Duration = Duration::from_secs(30);

async fn subscribe(app: &TestApp, url: &str, events: &[&str]) -> Value {
    let (status, body) = app
        .call(
            "POST",
            "/webhooks/subscriptions",
            Some(json!({"url": url, "event_types": events})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

fn event_of(request: &Request) -> String {
    serde_json::from_slice::<Value>(&request.body)
        .map(|body| body["event_type"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

async fn secret_of(app: &TestApp, subscription: &str) -> Secret {
    let (_, detail) = app
        .call(
            "GET",
            &format!("/webhooks/subscriptions/{subscription}?include_secret=true"),
            None,
        )
        .await;
    Secret::parse(detail["secret"].as_str().expect("the secret is shown")).expect("a whsec_ secret")
}

/// The signatures of a delivery, each checked against `secrets`: how many
/// of them match.
fn signatures_matching(request: &Request, secrets: &[&Secret]) -> usize {
    let id = header(request, "webhook-id");
    let timestamp: i64 = header(request, "webhook-timestamp")
        .parse()
        .expect("a unix time");
    header(request, "webhook-signature")
        .split(' ')
        .filter(|signature| {
            secrets
                .iter()
                .any(|secret| secret.sign(id, timestamp, &request.body) == *signature)
        })
        .count()
}

#[tokio::test]
async fn subscriptions_are_the_organizations_own_and_pass_the_egress_policy() {
    let app = TestApp::spawn_with(0).await;
    let refused = [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.7/hook", "private"),
        ("http://93.184.215.14/hook", "plain http"),
        ("ftp://93.184.215.14/hook", "scheme"),
        ("https://user:pw@93.184.215.14/hook", "userinfo"),
    ];
    for (url, why) in refused {
        let (status, body) = app
            .call(
                "POST",
                "/webhooks/subscriptions",
                Some(json!({"url": url, "event_types": ["sync.completed"]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "url"]),
            "{why}: {body}"
        );
    }
    let (status, body) = app
        .call(
            "POST",
            "/webhooks/subscriptions",
            Some(json!({"url": "https://93.184.215.14/hook", "event_types": ["sync.done"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "event_types", 0]));
    let (status, _) = app
        .call(
            "POST",
            "/webhooks/subscriptions",
            Some(
                json!({"url": "https://93.184.215.14/hook", "event_types": ["sync.failed"],
                        "secret": "too short"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let created = subscribe(
        &app,
        "https://93.184.215.14/hook",
        &["sync.completed", "sync.failed"],
    )
    .await;
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        created["filter_types"],
        json!(["sync.completed", "sync.failed"])
    );
    assert_eq!(created["health_status"], "unknown");
    assert!(created.get("secret").is_none(), "{created}");
    let (_, listed) = app.call("GET", "/webhooks/subscriptions", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (_, plain) = app
        .call("GET", &format!("/webhooks/subscriptions/{id}"), None)
        .await;
    assert!(plain.get("secret").is_none(), "{plain}");
    assert!(secret_of(&app, &id).await.to_text().starts_with("whsec_"));
    let (status, patched) = app
        .call(
            "PATCH",
            &format!("/webhooks/subscriptions/{id}"),
            Some(json!({"event_types": ["sync.failed"], "disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["filter_types"], json!(["sync.failed"]));
    assert_eq!(patched["disabled"], true);

    // Another organization sees none of it.
    let other = format!("sw_test_other_{}", Uuid::new_v4().simple());
    syncway_store::api_keys::ensure_organization_with_key(&app.db().await, "other", &other)
        .await
        .expect("another organization");
    let (_, theirs) = app
        .call_with_key("GET", "/webhooks/subscriptions", None, Some(&other))
        .await;
    assert_eq!(theirs, json!([]));
    for (verb, path, body) in [
        ("GET", format!("/webhooks/subscriptions/{id}"), None),
        (
            "PATCH",
            format!("/webhooks/subscriptions/{id}"),
            Some(json!({"disabled": false})),
        ),
        (
            "POST",
            format!("/webhooks/subscriptions/{id}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        ("DELETE", format!("/webhooks/subscriptions/{id}"), None),
    ] {
        let (status, _) = app.call_with_key(verb, &path, body, Some(&other)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{verb} {path}");
    }
    let (status, _) = app
        .call("DELETE", &format!("/webhooks/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call("GET", &format!("/webhooks/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_every_status_with_the_same_ids() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let receiver = MockServer::start().await;
    // The first two deliveries fail; everything after succeeds.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("down for a moment"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let events = ["sync.pending", "sync.running", "sync.completed"];
    let subscription = subscribe(&app, &format!("{}/hooks", receiver.uri()), &events).await;
    let secret = secret_of(&app, subscription["id"].as_str().expect("an id")).await;
    let connection = app.stub_connection(json!({"entity_count": 4}), false).await;
    let job = app.sync(connection, false).await;

    // Each of the three messages ends delivered; the failed ones were sent
    // again (after 5 s) under the same id, with the same body.
    let requests = eventually("every message to be delivered", DEADLINE, || async {
        let requests = receiver.received_requests().await?;
        let delivered = requests.len().checked_sub(2)?;
        (delivered == events.len()).then_some(requests)
    })
    .await;
    let mut ids: Vec<&str> = requests.iter().map(|r| header(r, "webhook-id")).collect();
    for request in &requests {
        assert_eq!(header(request, "svix-id"), header(request, "webhook-id"));
        assert_eq!(
            header(request, "svix-signature"),
            header(request, "webhook-signature")
        );
        assert_eq!(header(request, "content-type"), "application/json");
        assert_eq!(
            signatures_matching(request, &[&secret]),
            1,
            "a bad signature"
        );
    }
    let first_two: Vec<&str> = ids[..2].to_vec();
    for failed in &first_two {
        let tries: Vec<&Request> = requests
            .iter()
            .filter(|r| header(r, "webhook-id") == *failed)
            .collect();
        assert_eq!(tries.len(), 2, "a failed message is sent again");
        assert_eq!(tries[0].body, tries[1].body, "the same body on every try");
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three messages in all");
    let mut kinds: Vec<String> = requests.iter().map(event_of).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["sync.completed", "sync.pending", "sync.running"]);
    let completed = requests
        .iter()
        .find(|r| event_of(r) == "sync.completed")
        .map(|r| serde_json::from_slice::<Value>(&r.body).expect("a JSON body"))
        .expect("sync.completed");
    assert_eq!(completed["job_id"], job["id"]);
    assert_eq!(completed["sync_job_id"], job["id"]);
    assert_eq!(completed["source_connection_id"], json!(connection));
    assert_eq!(completed["entities_inserted"], 4);
    assert!(
        completed["version"].as_i64().is_some_and(|v| v > 0),
        "{completed}"
    );

    // The API tells the same story: a failed attempt, then a success.
    let first = first_two[0];
    let (_, message) = app
        .call(
            "GET",
            &format!("/webhooks/messages/{first}?include_attempts=true"),
            None,
        )
        .await;
    let statuses: Vec<(&str, i64)> = message["delivery_attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a["status"].as_str().unwrap_or_default(),
                a["response_status_code"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(statuses, [("failed", 500), ("success", 204)], "{message}");
    let (_, messages) = app
        .call("GET", "/webhooks/messages?event_types=sync.completed", None)
        .await;
    assert_eq!(messages.as_array().map(Vec::len), Some(1), "{messages}");
}

#[tokio::test]
async fn redirects_are_failures_gone_disables_and_retry_after_is_honoured() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let target = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&target)
        .await;
    let redirecting = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("{}/x", target.uri())),
        )
        .mount(&redirecting)
        .await;
    let gone = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&gone)
        .await;
    let busy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&busy)
        .await;
    let mut ids = Vec::new();
    for server in [&redirecting, &gone, &busy] {
        let body = subscribe(&app, &server.uri(), &["sync.completed"]).await;
        ids.push(body["id"].as_str().expect("an id").to_owned());
    }
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    app.sync(connection, false).await;

    let db = app.db().await;
    let attempts = |id: String| {
        let db = &db;
        async move {
            let row = db
                .query_opt(
                    "SELECT response_status_code FROM webhook_attempts WHERE subscription_id = $1",
                    &[&Uuid::parse_str(&id).expect("a uuid")],
                )
                .await
                .expect("reading attempts")?;
            row.get::<_, Option<i32>>(0)
        }
    };
    for (id, code) in ids.iter().zip([307, 410, 429]) {
        let seen = eventually("an attempt", DEADLINE, || attempts(id.clone())).await;
        assert_eq!(seen, code);
    }
    assert!(
        target
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "a redirect was followed"
    );
    let (_, gone_now) = app
        .call("GET", &format!("/webhooks/subscriptions/{}", ids[1]), None)
        .await;
    assert_eq!(gone_now["disabled"], true, "{gone_now}");
    assert_eq!(
        gone_now["disabled_reason"],
        "the endpoint answered 410 Gone"
    );
    assert_eq!(gone_now["health_status"], "failing");
    // The 429's delivery waits the hour it was asked to (within jitter-free
    // bounds: Retry-After replaces the schedule's 5 s).
    let wait: f64 = db
        .query_one(
            "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM webhook_deliveries
             WHERE subscription_id = $1 AND state = 'pending'",
            &[&Uuid::parse_str(&ids[2]).expect("a uuid")],
        )
        .await
        .expect("the 429's delivery")
        .get(0);
    assert!(
        (3500.0..=3600.0).contains(&wait),
        "next attempt in {wait} s"
    );
    // The redirect's delivery is retried on the schedule (5 s, ±20%).
    let (_, redirected) = app
        .call("GET", &format!("/webhooks/subscriptions/{}", ids[0]), None)
        .await;
    assert_eq!(redirected["disabled"], false);
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_and_a_long_failure_disables() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let body = subscribe(&app, &receiver.uri(), &["sync.completed"]).await;
    let id = body["id"].as_str().expect("an id").to_owned();
    let old = secret_of(&app, &id).await;
    let new = Secret::generate();
    let (status, _) = app
        .call(
            "PATCH",
            &format!("/webhooks/subscriptions/{id}"),
            Some(json!({"secret": new.to_text()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(secret_of(&app, &id).await, new);
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    app.sync(connection, false).await;
    let request = eventually("the delivery", DEADLINE, || async {
        receiver.received_requests().await?.into_iter().next()
    })
    .await;
    assert_eq!(header(&request, "webhook-signature").split(' ').count(), 2);
    assert_eq!(signatures_matching(&request, &[&new]), 1);
    assert_eq!(signatures_matching(&request, &[&old]), 1);

    // A subscription failing for longer than the setting is disabled by
    // its next failure.
    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&failing)
        .await;
    let body = subscribe(&app, &failing.uri(), &["sync.completed"]).await;
    let failing_id = Uuid::parse_str(body["id"].as_str().expect("an id")).expect("a uuid");
    app.db()
        .await
        .execute(
            "UPDATE webhook_subscriptions SET failing_since = now() - interval '121 hours'
             WHERE id = $1",
            &[&failing_id],
        )
        .await
        .expect("an old failure streak");
    app.sync(connection, false).await;
    let path = format!("/webhooks/subscriptions/{failing_id}");
    let disabled = eventually("the subscription to be disabled", DEADLINE, || async {
        let (_, body) = app.call("GET", &path, None).await;
        (body["disabled"] == true).then_some(body)
    })
    .await;
    assert_eq!(
        disabled["disabled_reason"],
        "every delivery failed for 120 hours"
    );
}
