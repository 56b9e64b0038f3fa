//! The public edges under abuse and at scale (issue 24): a valid key is
//! never refused for others' invalid ones, the client address behind the
//! operator's proxies, per-key limits that hold for the deployment however
//! many API processes serve it, and the cap on a key's event streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use uuid::Uuid;

use crate::hardening::retry_after;
use crate::harness::{TestApp, TestEnv, eventually, start_api};

async fn get_from(
    app: &TestApp,
    forwarded_for: Option<&str>,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = app.http.get(format!("{}/api-keys", app.url));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.expect("the request")
}

#[tokio::test]
async fn invalid_keys_from_an_address_never_lock_out_a_valid_key_from_it() {
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.limits.failed_auth_per_minute = 3;
    })
    .await;
    for attempt in 0..3 {
        let made_up = format!("sw_made_up_{attempt}");
        let response = get_from(&app, None, Some(&made_up)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let blocked = get_from(&app, None, Some("sw_made_up_again")).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&blocked) >= 1);
    // A valid key this process has not seen yet, from the same address,
    // is served; so is it again, and on the run route.
    for _ in 0..2 {
        let response = get_from(&app, None, Some(&app.key)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let run = format!("/source-connections/{}/run", Uuid::new_v4());
    let (status, body) = app.call("POST", &run, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Invalid keys stay refused; a request without a key is told so.
    let still = get_from(&app, None, Some("sw_made_up_once_more")).await;
    assert_eq!(still.status(), StatusCode::TOO_MANY_REQUESTS);
    let keyless = get_from(&app, None, None).await;
    assert_eq!(keyless.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    // The test client connects from 127.0.0.1: as the operator's proxy.
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.limits.failed_auth_per_minute = 2;
        settings.api.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let (a, b) = (Some("203.0.113.1"), Some("203.0.113.1, 198.51.100.2"));
    for _ in 0..2 {
        assert_eq!(
            get_from(&app, a, Some("sw_bad")).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        get_from(&app, a, Some("sw_bad")).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "client a is over its budget"
    );
    // The right-most hop names the client: b (198.51.100.2) has its own
    // budget, whatever it put before it.
    assert_eq!(
        get_from(&app, b, Some("sw_bad")).await.status(),
        StatusCode::FORBIDDEN
    );

    // From a peer that is not a trusted proxy the header is ignored: every
    // request counts against the peer itself.
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.limits.failed_auth_per_minute = 2;
    })
    .await;
    for address in ["203.0.113.1", "203.0.113.2"] {
        let response = get_from(&app, Some(address), Some("sw_bad")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let response = get_from(&app, Some("203.0.113.3"), Some("sw_bad")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_keys_streams_are_capped_and_a_closed_one_frees_its_slot_at_once() {
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.limits.streams_per_key = 2;
    })
    .await;
    // No worker: the job stays pending and its streams stay open.
    let connection = app.stub_connection(serde_json::json!({}), false).await;
    let job = app.run(connection, false).await;
    let open = || async {
        app.http
            .get(format!("{}/sync/job/{job}/subscribe", app.url))
            .header("x-api-key", &app.key)
            .send()
            .await
            .expect("the stream request")
    };
    let first = open().await;
    let second = open().await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let third = open().await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&third) >= 1);
    let body: serde_json::Value = third.json().await.expect("a JSON body");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("event streams")),
        "{body}"
    );
    // Another key of the organization has its own.
    let (status, other) = app
        .call("POST", "/api-keys", Some(serde_json::json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let other = other["key"].as_str().expect("a key").to_owned();
    let foreign = app
        .http
        .get(format!("{}/sync/job/{job}/subscribe", app.url))
        .header("x-api-key", &other)
        .send()
        .await
        .expect("the stream request");
    assert_eq!(foreign.status(), StatusCode::OK);
    // Closing one frees its slot well before any keep-alive would notice.
    drop(first);
    let started = Instant::now();
    eventually(
        "the closed stream's slot",
        Duration::from_secs(5),
        || async {
            let next = open().await;
            (next.status() == StatusCode::OK).then_some(next)
        },
    )
    .await;
    println!("slot freed {:?} after the close", started.elapsed());
}

#[tokio::test]
async fn two_api_processes_hold_a_keys_rate_for_the_deployment() {
    const RATE: u32 = 20;
    let env = TestEnv::new().await;
    let mut second_settings = None;
    let app = TestApp::with_api(env, |settings| {
        settings.limits.requests_per_second = RATE;
        settings.limits.burst = RATE;
        second_settings = Some(settings.clone());
    })
    .await;
    let (second, second_url) = start_api(second_settings.expect("the first API's settings")).await;
    for running in [&app.api, &second] {
        running.wait_for_metric("syncway_api_processes", 2.0).await;
    }
    // One client, as fast as it can, over both processes for a while.
    let window = Duration::from_secs(3);
    let accepted = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for sender in 0..4 {
        let url = if sender % 2 == 0 {
            app.url.clone()
        } else {
            second_url.clone()
        };
        let (http, key, accepted) = (app.http.clone(), app.key.clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            while started.elapsed() < window {
                let response = http
                    .get(format!("{url}/api-keys"))
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .expect("the request");
                if response.status() == StatusCode::OK {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for sender in senders {
        sender.await.expect("a sender");
    }
    let seconds = started.elapsed().as_secs_f64();
    let accepted = f64::from(accepted.load(Ordering::Relaxed));
    let allowed = f64::from(RATE) * seconds + f64::from(RATE);
    println!("accepted {accepted} in {seconds:.2} s: the setting allows {allowed:.0}");
    // Within one burst of the setting, and far from twice it.
    assert!(
        accepted <= allowed + f64::from(RATE) / 2.0,
        "{accepted} > {allowed}"
    );
    assert!(
        accepted >= f64::from(RATE) * seconds * 0.8,
        "{accepted} is too few"
    );
    // A process that stops leaves the registry: the other takes the whole
    // rate back.
    second.shutdown().await.expect("the second API stops");
    app.api.wait_for_metric("syncway_api_processes", 1.0).await;
}
