//! Tenant containment (CONTRACT.md §4): each attack a tenant could make
//! with a connector, made, and what it now gets.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::{TestApp, TestEnv, counts};

/// The `loc` of a 422's first error, joined with dots.
fn loc(body: &Value) -> String {
    body["detail"][0]["loc"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| p.to_string())
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .unwrap_or_default()
}

fn message(body: &Value) -> String {
    body["detail"][0]["msg"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Asks for a connection that must be refused; returns the 422's `loc`
/// (dotted) and message.
async fn refused(
    app: &TestApp,
    short_name: &str,
    config: Value,
    credentials: impl Into<Option<Value>>,
) -> (String, String) {
    let shown = config.to_string();
    let (status, body) = app
        .try_connection(short_name, config, credentials, false)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{shown}: {body}");
    (loc(&body), message(&body))
}

#[tokio::test]
async fn reading_the_workers_environment_through_proc_is_refused() {
    // local_files is disabled unless the operator lists roots.
    let app = TestApp::spawn_with(0).await;
    let config = json!({"path": "/proc/self", "glob": "environ"});
    let (at, msg) = refused(&app, "local_files", config.clone(), None).await;
    assert_eq!(at, "body.config.path");
    assert!(msg.contains("disabled"), "{msg}");

    // With roots, /proc is still never readable, nor anything outside them.
    let env = TestEnv::new().await.allowing_temp_files();
    let app = TestApp::spawn_on(env, 0).await;
    let outside = std::env::temp_dir().join("..").join("etc");
    for path in [
        "/proc/self".to_owned(),
        "/etc".to_owned(),
        outside.display().to_string(),
    ] {
        let (at, _) = refused(&app, "local_files", json!({"path": path}), None).await;
        assert_eq!(at, "body.config.path", "{path}");
    }
    // Nor by PATCH of a connection that was allowed.
    let dir = tempdir();
    let connection = app
        .connection_of(
            "local_files",
            json!({"path": dir.display().to_string()}),
            None,
            false,
        )
        .await;
    let (status, body) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"config": {"path": "/proc/self", "glob": "environ"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(loc(&body), "body.config.path");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("syncway-contain-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

#[tokio::test]
async fn a_symlink_out_of_the_root_is_not_followed_and_counts_as_failed() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_temp_files(), 1).await;
    let dir = tempdir();
    std::fs::write(dir.join("inside.txt"), "inside").expect("write");
    std::os::unix::fs::symlink("/etc/hostname", dir.join("escape.txt")).expect("symlink");
    std::os::unix::fs::symlink(dir.join("inside.txt"), dir.join("alias.txt")).expect("symlink");
    let connection = app
        .connection_of(
            "local_files",
            json!({"path": dir.display().to_string()}),
            None,
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [2, 0, 0, 1], "{job}");
    let failures = &job["error_details"]["failed_entities"];
    assert_eq!(failures[0]["entity_id"], "escape.txt", "{job}");
    assert!(
        failures[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("outside")),
        "{job}"
    );
    let ids: Vec<String> = app
        .pairs(
            "SELECT entity_id, payload->'content' FROM entities WHERE source_connection_id = $1 ORDER BY 1",
            &[&connection],
        )
        .await
        .into_iter()
        .map(|(id, content)| format!("{id}={content}"))
        .collect();
    assert_eq!(ids, ["alias.txt=\"inside\"", "inside.txt=\"inside\""]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_worker_checks_the_roots_again_at_run_time() {
    // The API allows the path, the worker's operator does not.
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_temp_files(), |_| {}).await;
    app.add_worker(|settings| settings.connectors.local_files.roots.clear())
        .await;
    let dir = tempdir();
    let connection = app
        .connection_of(
            "local_files",
            json!({"path": dir.display().to_string()}),
            None,
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
    assert!(
        job["error"].as_str().is_some_and(|e| e.contains("ROOTS")),
        "{job}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every spelling of an internal address, as `host` credentials of a
/// `postgres` connection and as the host of an `http_json` URL.
async fn internal_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "::1",
        "[::ffff:127.0.0.1]",
        "127.1",
        "2130706433",
        "0x7f000001",
        "169.254.169.254",
        "10.0.0.1",
        "0.0.0.0",
    ]
    .map(str::to_owned)
    .to_vec();
    // The machine's own name resolves to one of its internal addresses.
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let name = name.trim().to_owned();
    let resolved: Vec<_> = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .map(|found| found.collect())
        .unwrap_or_default();
    assert!(
        !resolved.is_empty()
            && resolved
                .iter()
                .all(|a| syncway_egress::address::internal_range(a.ip()).is_some()),
        "{name} should resolve to internal addresses: {resolved:?}"
    );
    hosts.push(name);
    hosts
}

#[tokio::test]
async fn postgres_cannot_reach_internal_addresses_by_default() {
    let app = TestApp::spawn_with(0).await;
    for host in internal_hosts().await {
        let unbracketed = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let (at, msg) = refused(
            &app,
            "postgres",
            json!({"table": "t"}),
            json!({"host": unbracketed, "port": 5432, "user": "postgres", "database": "postgres"}),
        )
        .await;
        assert_eq!(at, "body.authentication.credentials.host", "{host}");
        assert!(msg.contains("ALLOW_CIDRS"), "{host}: {msg}");
        // A bare IPv6 address is no URL host; bracketed, it is.
        if !host.contains(':') || host.starts_with('[') {
            let url = format!("postgres://postgres@{host}:5432/postgres");
            let (at, _) =
                refused(&app, "postgres", json!({"table": "t"}), json!({"url": url})).await;
            assert_eq!(at, "body.authentication.credentials.url", "{host}");
        }
    }
    // A Unix socket is no way around it.
    let socket = json!({"url": "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres"});
    let (_, msg) = refused(&app, "postgres", json!({"table": "t"}), socket).await;
    assert!(msg.contains("Unix"), "{msg}");
}

#[tokio::test]
async fn a_denied_source_fails_the_run_the_same_whether_anything_listens_or_not() {
    // The API's operator allows loopback, the worker's does not: the worker
    // checks the address it would connect to, and connects to nothing.
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| settings.connectors.allow_cidrs.clear())
        .await;
    let mut errors = Vec::new();
    for port in [5432, 1] {
        let connection = app
            .connection_of(
                "postgres",
                json!({"table": "t"}),
                json!({"url": format!("postgres://postgres@127.0.0.1:{port}/postgres")}),
                false,
            )
            .await;
        let job = app.sync(connection, false).await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
        errors.push(job["error"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        errors[0].contains("127.0.0.1") && errors[0].contains("ALLOW_CIDRS"),
        "{errors:?}"
    );
    // No oracle: a listening server and a closed port read the same.
    assert_eq!(errors[0], errors[1]);
    assert!(
        !errors[0].contains("5432") && !errors[0].contains("refused"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn syncways_own_database_is_never_a_source_even_on_an_allowed_address() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let own = app.env.database_url();
    let (_, msg) = refused(
        &app,
        "postgres",
        json!({"table": "sync_jobs"}),
        json!({"url": own}),
    )
    .await;
    assert!(msg.contains("own database"), "{msg}");
    // Another database on the same server may be.
    let source = app.env.source_url().await;
    app.env
        .source_db()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .expect("source table");
    let connection = app
        .connection_of(
            "postgres",
            json!({"table": "t"}),
            json!({"url": source}),
            false,
        )
        .await;
    assert_eq!(counts(&app.sync(connection, false).await), [1, 0, 0, 0]);

    // Credentials swapped for the own database behind the API's back (as if
    // sealed by hand) are refused by the worker when it connects.
    let cipher = syncway_runtime::CredentialCipher::from_settings(&app.env.settings().security)
        .expect("the test cipher");
    let swapped = json!({"url": own.replace("127.0.0.1", "localhost")});
    let sealed = cipher.seal(connection, &swapped).unwrap();
    app.db()
        .await
        .execute(
            "UPDATE source_connections SET credentials = $2 WHERE id = $1",
            &[&connection, &sealed],
        )
        .await
        .expect("swapping credentials");
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("own database")),
        "{job}"
    );
}

#[tokio::test]
async fn http_json_cannot_reach_internal_addresses_by_default() {
    let app = TestApp::spawn_with(0).await;
    for host in internal_hosts().await {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let (at, _) = refused(
            &app,
            "http_json",
            json!({"url": format!("http://{host}:15672/api/overview")}),
            None,
        )
        .await;
        assert_eq!(at, "body.config.url", "{host}");
    }
    for (config, field) in [
        (
            json!({"url": "https://user:pw@api.example/items"}),
            "body.config.url",
        ),
        (
            json!({"url": "https://api.example/items", "token_url": "http://169.254.169.254/token"}),
            "body.config.token_url",
        ),
        (
            json!({"url": "https://api.example/items", "api_key_header": "Metadata-Flavor"}),
            "body.config.api_key_header",
        ),
        (
            json!({"url": "https://api.example/items", "api_key_header": "X-Forwarded-For"}),
            "body.config.api_key_header",
        ),
    ] {
        let (at, _) = refused(&app, "http_json", config.clone(), None).await;
        assert_eq!(at, field, "{config}");
    }
    // Credentials over plain http to a host not allowed as internal.
    let plain = json!({"url": "http://api.example/items"});
    let (_, msg) = refused(&app, "http_json", plain, json!({"api_key": "k"})).await;
    assert!(msg.contains("plain http"), "{msg}");
}

#[tokio::test]
async fn redirects_and_next_links_are_checked_at_every_hop() {
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    // A redirect to the cloud metadata address.
    Mock::given(method("GET"))
        .and(path("/to-metadata"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", "http://169.254.169.254/latest/meta-data/"),
        )
        .mount(&api)
        .await;
    // A next link to a private address.
    Mock::given(method("GET"))
        .and(path("/paged"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"items": [{"id": 1}], "next": "http://10.0.0.1/items?page=2"}),
            ),
        )
        .mount(&api)
        .await;
    for (route, denied) in [("/to-metadata", "169.254.169.254"), ("/paged", "10.0.0.1")] {
        let connection = app
            .connection_of(
                "http_json",
                json!({"url": format!("{}{route}", api.uri()), "items_path": "items",
                       "next_link_path": "next"}),
                None,
                false,
            )
            .await;
        let job = app.sync(connection, false).await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error_details"]["kind"], "permanent", "{job}");
        let error = job["error"].as_str().unwrap_or_default();
        assert!(error.contains(denied) && error.contains("ALLOW_"), "{job}");
    }

    // A redirect to another origin (allowed) is followed without the key.
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(header("X-API-Key", "the-key"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/moved", elsewhere.uri())),
        )
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/moved"))
        .and(header_exists("X-API-Key"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&elsewhere)
        .await;
    Mock::given(method("GET"))
        .and(path("/moved"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": "a"}])))
        .mount(&elsewhere)
        .await;
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/items", api.uri())}),
            json!({"api_key": "the-key"}),
            false,
        )
        .await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [1, 0, 0, 0]);
    let received = elsewhere.received_requests().await.unwrap_or_default();
    assert!(
        !received.is_empty()
            && received
                .iter()
                .all(|r| !r.headers.contains_key("x-api-key"))
    );
}

#[tokio::test]
async fn an_allowed_host_name_opens_exactly_that_name() {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let name = name.trim().to_owned();
    let mut env = TestEnv::new().await;
    env.allow_hosts = vec![name.clone()];
    let app = TestApp::spawn_on(env, 1).await;
    // The mock listens where the name resolves, whatever /etc/hosts says
    // (Debian's names the machine 127.0.1.1).
    let at = tokio::net::lookup_host((name.as_str(), 0))
        .await
        .ok()
        .and_then(|mut found| found.next())
        .unwrap_or_else(|| panic!("{name} resolves"));
    let listener =
        std::net::TcpListener::bind((at.ip(), 0)).expect("binding where the name resolves");
    let api = MockServer::builder().listener(listener).start().await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 7}])))
        .mount(&api)
        .await;
    let port = api.address().port();
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("http://{name}:{port}/items")}),
            json!({"api_key": "k"}),
            false,
        )
        .await;
    assert_eq!(counts(&app.sync(connection, false).await), [1, 0, 0, 0]);
    // The same server by address is still denied.
    let (at, msg) = refused(
        &app,
        "http_json",
        json!({"url": format!("{}/items", api.uri())}),
        None,
    )
    .await;
    assert_eq!(at, "body.config.url");
    assert!(msg.contains(&api.address().ip().to_string()), "{msg}");
}
