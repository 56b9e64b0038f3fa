//! The API facing the public (CONTRACT.md §7): rate limits, slow and
//! stalled clients, request timeouts, request ids, unknown methods, the
//! security headers, and refusing to start without an encryption key.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, TestEnv, eventually, local_listener};

pub(crate) fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("429 carries Retry-After in seconds")
}

async fn get(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.url))
        .header("x-api-key", key)
        .send()
        .await
        .expect("the request")
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not() {
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.limits.requests_per_second = 1;
        settings.limits.burst = 3;
    })
    .await;
    let other = format!("sw_{}", Uuid::new_v4().simple());
    syncway_store::api_keys::ensure_organization_with_key(&app.db().await, "other", &other)
        .await
        .expect("another key");
    for _ in 0..3 {
        assert_eq!(
            get(&app, "/api-keys", &app.key).await.status(),
            StatusCode::OK
        );
    }
    let limited = get(&app, "/api-keys", &app.key).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=2).contains(&retry_after(&limited)));
    let body: Value = limited.json().await.expect("a JSON body");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("rate limit"))
    );
    // The run route authenticates in its own statement: limited the same.
    let run = format!("/source-connections/{}/run", Uuid::new_v4());
    let (status, _) = app.call("POST", &run, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        get(&app, "/api-keys", &other).await.status(),
        StatusCode::OK
    );
    // The bucket refills.
    eventually("the key's bucket to refill", DEADLINE, || async {
        (get(&app, "/api-keys", &app.key).await.status() == StatusCode::OK).then_some(())
    })
    .await;
}

/// Writes `bytes` one per `every`, until the server closes the connection;
/// returns how many it took.
async fn dribble(stream: &mut TcpStream, bytes: &[u8], every: Duration) -> Option<usize> {
    let mut tick = tokio::time::interval(every);
    for (sent, byte) in bytes.iter().enumerate() {
        tick.tick().await;
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(sent);
        }
        let mut probe = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(sent),
            Ok(Ok(_)) => return None,
            Err(_) => {}
        }
    }
    None
}

#[tokio::test]
async fn a_client_sending_a_header_byte_a_second_is_cut_off_and_others_are_served() {
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.api.header_timeout_seconds = 2;
        settings.api.max_connections = 2;
    })
    .await;
    let address = app.url.trim_start_matches("http://").to_owned();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // Two slow clients take every connection the server allows.
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(TcpStream::connect(&address).await.expect("connecting"));
    }
    let served = tokio::spawn({
        let url = format!("{}/healthz", app.url);
        async move { reqwest::get(url).await.map(|r| r.status()) }
    });
    let cut = futures_util::future::join_all(
        slow.iter_mut()
            .map(|stream| dribble(stream, request, Duration::from_secs(1))),
    )
    .await;
    for bytes in cut {
        let bytes = bytes.expect("the server cuts a client that dribbles its headers");
        assert!(bytes < request.len(), "cut after {bytes} bytes");
    }
    let status = tokio::time::timeout(DEADLINE, served)
        .await
        .expect("a third client is served once the slow ones are cut")
        .expect("the task");
    assert_eq!(status.ok(), Some(StatusCode::OK));
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_gets_408_with_the_contract_body() {
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.api.request_timeout_seconds = 1;
    })
    .await;
    let address = app.url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).await.expect("connecting");
    let head = format!(
        "POST /collections HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"na",
        app.key
    );
    stream.write_all(head.as_bytes()).await.expect("writing");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            answer.extend_from_slice(&buffer[..n]);
            if n == 0 || answer.windows(9).any(|w| w == b"\"detail\":") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server answers a stalled body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("\"detail\":\"the request took too long"),
        "{text}"
    );
}

#[tokio::test]
async fn responses_carry_security_headers_and_only_plain_request_ids() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let send = |id: Option<&'static str>| {
        let mut request = app.http.get(format!("{}/api-keys", app.url));
        request = request.header("x-api-key", &app.key);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let response = send(Some("trace-42.a_b:c")).await.expect("a response");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(header("x-request-id").as_deref(), Some("trace-42.a_b:c"));
    for smuggled in ["<script>alert(1)</script>", "a b", "x\"}{\"forged\":1"] {
        let response = send(Some(smuggled)).await.expect("a response");
        let id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("a request id")
            .to_owned();
        assert!(
            Uuid::parse_str(&id).is_ok(),
            "{smuggled:?} was replaced, not {id:?}"
        );
    }
    let long = "a".repeat(129);
    let response = app
        .http
        .get(format!("{}/healthz", app.url))
        .header("x-request-id", &long)
        .send()
        .await
        .expect("a response");
    let id = response.headers().get("x-request-id").expect("an id");
    assert_ne!(id.as_bytes(), long.as_bytes());
}

#[tokio::test]
async fn an_unknown_method_is_a_4xx_and_its_metric_label_is_other() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    for method in ["FROB", "PROPFIND", "X-ANYTHING-123"] {
        let response = app
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("a token"),
                format!("{}/source-connections", app.url),
            )
            .header("x-api-key", &app.key)
            .send()
            .await
            .expect("a response");
        assert!(response.status().is_client_error(), "{method}");
        let body: Value = response.json().await.expect("a JSON body");
        assert!(body["detail"].is_string());
    }
    let metrics = reqwest::get(format!("{}/metrics", app.api.metrics_url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(!metrics.contains("FROB") && !metrics.contains("PROPFIND"));
}

#[tokio::test]
async fn over_long_names_descriptions_and_readable_ids_are_422() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let (status, _) = app
        .call(
            "POST",
            "/collections",
            Some(json!({"name": "x", "readable_id": "a".repeat(64)})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "64 characters is the longest readable id"
    );
    let collection = "a".repeat(64);
    let cases = [
        ("/collections", json!({"name": "x".repeat(256)}), "name"),
        (
            "/collections",
            json!({"name": "x", "readable_id": "a".repeat(65)}),
            "readable_id",
        ),
        (
            "/source-connections",
            json!({"short_name": "stub", "readable_collection_id": collection,
                   "name": "n".repeat(256)}),
            "name",
        ),
        (
            "/source-connections",
            json!({"short_name": "stub", "readable_collection_id": collection,
                   "description": "d".repeat(4097)}),
            "description",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = app.call("POST", path, Some(body)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {field}: {answer}"
        );
        assert_eq!(answer["detail"][0]["loc"], json!(["body", field]));
    }
    let (status, made) = app
        .call(
            "POST",
            "/source-connections",
            Some(
                json!({"short_name": "stub", "readable_collection_id": collection,
                        "description": "d".repeat(4096)}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let path = format!(
        "/source-connections/{}",
        made["id"].as_str().expect("an id")
    );
    let (status, _) = app
        .call(
            "PATCH",
            &path,
            Some(json!({"description": "d".repeat(4097)})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn neither_process_starts_without_an_encryption_key_unless_allowed() {
    let env = TestEnv::new().await;
    let mut settings = env.settings();
    settings.security.allow_development_key = false;
    settings.security.encryption_key = None;
    let (listener, _) = local_listener().await;
    let (metrics, _) = local_listener().await;
    let refused = syncway_api::run(settings.clone(), listener, metrics, std::future::pending())
        .await
        .expect_err("the API refuses to start");
    assert!(
        format!("{refused:#}").contains("SYNCWAY_SECURITY__ENCRYPTION_KEY"),
        "{refused:#}"
    );
    let (metrics, _) = local_listener().await;
    let refused = syncway_worker::run(settings, metrics, std::future::pending())
        .await
        .expect_err("the worker refuses to start");
    assert!(
        format!("{refused:#}").contains("SYNCWAY_SECURITY__ALLOW_DEVELOPMENT_KEY"),
        "{refused:#}"
    );
}
