//! Secrets stay secret (invariant 8): sealed credentials are bound to their
//! connection and to a key that can be rotated, and URLs in errors and logs
//! carry no credentials.

use std::process::Command;

use secrecy::SecretString;
use serde_json::json;
use syncway_runtime::CredentialCipher;
use syncway_runtime::settings::SecuritySettings;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{TestApp, TestEnv, counts};

fn security(key: &str, previous: &[&str]) -> SecuritySettings {
    SecuritySettings {
        encryption_key: Some(SecretString::from(key.repeat(32))),
        previous_keys: previous
            .iter()
            .map(|k| SecretString::from(k.repeat(32)))
            .collect(),
        allow_development_key: false,
    }
}

fn cipher(key: &str) -> CredentialCipher {
    CredentialCipher::from_settings(&security(key, &[])).expect("a valid key")
}

async fn sealed(app: &TestApp, connection: Uuid) -> Vec<u8> {
    app.db()
        .await
        .query_one(
            "SELECT credentials FROM source_connections WHERE id = $1",
            &[&connection],
        )
        .await
        .map(|row| row.get(0))
        .expect("sealed credentials")
}

async fn set_sealed(app: &TestApp, connection: Uuid, blob: &[u8]) {
    app.db()
        .await
        .execute(
            "UPDATE source_connections SET credentials = $2 WHERE id = $1",
            &[&connection, &blob],
        )
        .await
        .expect("writing credentials");
}

/// An API that answers only the key `the-key`.
async fn keyed_api() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(header("X-API-Key", "the-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 1}])))
        .mount(&api)
        .await;
    api
}

#[tokio::test]
async fn sealed_credentials_moved_to_another_connection_do_not_open() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let api = keyed_api().await;
    let config = json!({"url": format!("{}/items", api.uri())});
    let first = app
        .connection_of(
            "http_json",
            config.clone(),
            json!({"api_key": "the-key"}),
            false,
        )
        .await;
    let second = app
        .connection_of("http_json", config, json!({"api_key": "other"}), false)
        .await;
    assert_eq!(counts(&app.sync(first, false).await), [1, 0, 0, 0]);
    let blob = sealed(&app, first).await;
    set_sealed(&app, second, &blob).await;
    let job = app.sync(second, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be decrypted")),
        "{job}"
    );
}

#[tokio::test]
async fn a_rotated_key_opens_old_credentials_and_seals_them_again() {
    let env = TestEnv::new().await.allowing_loopback();
    // The API and the worker run with the new key, the old one listed.
    let mut app =
        TestApp::with_api(env, |settings| settings.security = security("22", &["11"])).await;
    app.add_worker(|settings| settings.security = security("22", &["11"]))
        .await;
    let api = keyed_api().await;
    let config = json!({"url": format!("{}/items", api.uri())});
    // Blobs as the old key sealed them: one of today's format, one of the
    // first (no key id, no connection binding).
    let current = app
        .connection_of("http_json", config.clone(), json!({"api_key": "x"}), false)
        .await;
    let first_format = app
        .connection_of("http_json", config.clone(), json!({"api_key": "x"}), false)
        .await;
    set_sealed(
        &app,
        current,
        &cipher("11")
            .seal(current, &json!({"api_key": "the-key"}))
            .unwrap(),
    )
    .await;
    set_sealed(
        &app,
        first_format,
        &cipher("11")
            .seal_first_format(&json!({"api_key": "the-key"}))
            .unwrap(),
    )
    .await;
    for connection in [current, first_format] {
        let job = app.sync(connection, false).await;
        assert_eq!(counts(&job), [1, 0, 0, 0], "{job}");
        // Sealed again, with the new key, for this connection.
        let blob = sealed(&app, connection).await;
        let opened = cipher("22")
            .open(connection, &blob)
            .expect("the new key alone opens it");
        assert_eq!(opened.credentials, json!({"api_key": "the-key"}));
        assert!(cipher("11").open(connection, &blob).is_err());
    }
    // A PATCH reseals too (here: of a blob set back to the old key).
    set_sealed(
        &app,
        current,
        &cipher("11")
            .seal(current, &json!({"api_key": "the-key"}))
            .unwrap(),
    )
    .await;
    let (status, body) = app
        .call(
            "PATCH",
            &format!("/source-connections/{current}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let blob = sealed(&app, current).await;
    assert!(cipher("22").open(current, &blob).is_ok_and(|o| !o.stale));
    // Resealing is no new credential: the connection's state is untouched.
    assert_eq!(app.connection(current).await["status"], body["status"]);
}

#[tokio::test]
async fn urls_in_job_errors_and_logs_carry_no_credentials() {
    let env = TestEnv::new().await.allowing_loopback();
    let app = TestApp::with_api(env, |_| {}).await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&api)
        .await;
    let secret = format!("s3cr3t{}", Uuid::new_v4().simple());
    let url = format!("{}/items?api_key={secret}&page=1", api.uri());
    let connection = app
        .connection_of("http_json", json!({"url": url}), None, false)
        .await;
    // The worker as its own process, logging everything it does.
    let log = std::env::temp_dir().join(format!("syncway-log-{}", Uuid::new_v4().simple()));
    let log_file = std::fs::File::create(&log).expect("a log file");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_syncway-test-worker"))
        .env("SYNCWAY_DATABASE__URL", app.env.database_url())
        .env("SYNCWAY_DATABASE__MIGRATE", "false")
        .env("SYNCWAY_SECURITY__ALLOW_DEVELOPMENT_KEY", "true")
        .env("SYNCWAY_AMQP__NAMESPACE", &app.env.namespace)
        .env("SYNCWAY_METRICS__LISTEN", "127.0.0.1:0")
        .env("SYNCWAY_CONNECTORS__ALLOW_CIDRS", "127.0.0.1/32")
        .env("SYNCWAY_RETRY__MAX_ATTEMPTS", "1")
        .env("RUST_LOG", "debug")
        .stdout(log_file.try_clone().expect("the log file"))
        .stderr(log_file)
        .spawn()
        .expect("starting the worker process");
    let job = app.run(connection, false).await;
    let done = app.finished_job(connection, job).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/items") && error.contains("api_key=***"),
        "{done}"
    );
    assert!(!done.to_string().contains(&secret), "{done}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    // It logged the job, its failure and the HTTP exchange...
    assert!(
        logged.contains(&job.to_string()) && logged.contains("source failed"),
        "{logged}"
    );
    // ...and never the secret.

    assert!(!logged.contains(&secret), "the log holds the secret");
}
