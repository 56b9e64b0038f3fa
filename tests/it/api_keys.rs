//! Organizations and API keys (CONTRACT.md §7): keys made over HTTP and by
//! the operator's commands, revoked at once in every API process, rotated
//! with a grace period, roles, expiry, and the bootstrap key's replacement.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{
    ApiProcess, DEADLINE, TestApp, TestEnv, api_command, api_command_with, eventually, start_api,
};

/// The contract's key format: `sw_` and at least 32 URL-safe characters.
fn assert_key_format(key: &str) {
    let rest = key.strip_prefix("sw_").expect("keys start with sw_");
    assert!(rest.len() >= 32, "{key} is too short");
    assert!(
        rest.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{key} is not URL-safe"
    );
}

async fn status_with(url: &str, method: &str, path: &str, key: &str) -> StatusCode {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .header("x-api-key", key)
        .send()
        .await
        .expect("the request")
        .status()
}

async fn make_key(app: &TestApp, key: &str, body: Value) -> Value {
    let (status, made) = app
        .call_with_key("POST", "/api-keys", Some(body), Some(key))
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    made
}

#[tokio::test]
async fn a_key_made_over_http_works_until_revoked_and_then_no_api_process_accepts_it() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let other = ApiProcess::start(&app.env, &[]).await;
    let made = make_key(&app, &app.key, json!({"name": "ci", "expires_in_days": 30})).await;
    let key = made["key"].as_str().expect("the key, once").to_owned();
    assert_key_format(&key);
    assert_eq!(made["name"], "ci");
    assert_eq!(made["prefix"].as_str(), Some(&key[..11]));
    assert_eq!(made["last_used_at"], Value::Null);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(made["expires_at"].clone()).expect("an expiry");
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.0).contains(&days), "{days} days");

    // The other API process accepts it: keys live in the database only.
    assert_eq!(
        status_with(&other.url, "GET", "/api-keys", &key).await,
        StatusCode::OK
    );
    let (_, listed) = app
        .call_with_key("GET", "/api-keys", None, Some(&key))
        .await;
    let listed = listed.as_array().expect("a list").clone();
    let mine = listed
        .iter()
        .find(|k| k["id"] == made["id"])
        .expect("the new key is listed");
    assert!(
        mine.get("key").is_none(),
        "a listed key never shows the key"
    );
    assert!(listed.iter().all(|k| k.get("key").is_none()));
    // Using it is recorded, coarsely and off the request path.
    eventually("last_used_at to be recorded", DEADLINE, || async {
        let (_, listed) = app.call("GET", "/api-keys", None).await;
        let mine = listed
            .as_array()?
            .iter()
            .find(|k| k["id"] == made["id"])?
            .clone();
        (!mine["last_used_at"].is_null()).then_some(())
    })
    .await;

    let id = made["id"].as_str().expect("an id");
    let (status, revoked) = app.call("DELETE", &format!("/api-keys/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["id"], made["id"]);
    assert!(revoked.get("key").is_none());
    // At once, in the other process too, on the self-authenticating run
    // route as on the others.
    let run = format!("/source-connections/{}/run", Uuid::new_v4());
    for (method, path) in [("GET", "/api-keys"), ("POST", run.as_str())] {
        assert_eq!(
            status_with(&other.url, method, path, &key).await,
            StatusCode::FORBIDDEN,
            "{method} {path} on the other process"
        );
        assert_eq!(
            status_with(&app.url, method, path, &key).await,
            StatusCode::FORBIDDEN
        );
    }
    let (status, _) = app.call("DELETE", &format!("/api-keys/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "revoked twice");
}

#[tokio::test]
async fn a_rotated_key_works_for_its_grace_period_and_then_stops() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let old = make_key(&app, &app.key, json!({"name": "deploy"})).await;
    let old_key = old["key"].as_str().expect("a key").to_owned();
    let id = old["id"].as_str().expect("an id");
    let (status, new) = app
        .call_with_key(
            "POST",
            &format!("/api-keys/{id}/rotate"),
            Some(json!({"grace_seconds": 2})),
            Some(&old_key),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{new}");
    let new_key = new["key"].as_str().expect("the new key").to_owned();
    assert_key_format(&new_key);
    assert_ne!(new_key, old_key);
    assert_eq!(new["name"], "deploy");
    assert_ne!(new["id"], old["id"]);
    assert_eq!(
        status_with(&app.url, "GET", "/api-keys", &new_key).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&app.url, "GET", "/api-keys", &old_key).await,
        StatusCode::OK,
        "the old key works during the grace period"
    );
    eventually("the old key to stop after its grace", DEADLINE, || async {
        let status = status_with(&app.url, "GET", "/api-keys", &old_key).await;
        (status == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    assert_eq!(
        status_with(&app.url, "GET", "/api-keys", &new_key).await,
        StatusCode::OK
    );
    // An expired key cannot be rotated; the default grace is a day.
    let (status, _) = app
        .call("POST", &format!("/api-keys/{id}/rotate"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let new_id = new["id"].as_str().expect("an id");
    let (status, _) = app
        .call("POST", &format!("/api-keys/{new_id}/rotate"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = app.call("GET", "/api-keys", None).await;
    let rotated = listed
        .as_array()
        .expect("a list")
        .iter()
        .find(|k| k["id"] == new["id"])
        .expect("the rotated key is listed until it expires")
        .clone();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rotated["expires_at"].clone()).expect("an expiry");
    let hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours} hours");
    // Out-of-range grace and lifetimes are 422.
    for (path, body, field) in [
        (
            format!("/api-keys/{new_id}/rotate"),
            json!({"grace_seconds": -1}),
            "grace_seconds",
        ),
        (
            "/api-keys".to_owned(),
            json!({"expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            "/api-keys".to_owned(),
            json!({"name": "x".repeat(256)}),
            "name",
        ),
    ] {
        let (status, body) = app.call("POST", &path, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", field]));
    }
}

#[tokio::test]
async fn only_operator_keys_make_use_or_touch_operator_keys() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let member = make_key(&app, &app.key, json!({"name": "member"})).await;
    let member_key = member["key"].as_str().expect("a key").to_owned();
    let (status, _) = app
        .call_with_key(
            "POST",
            "/api-keys",
            Some(json!({"role": "operator"})),
            Some(&member_key),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a member makes no operator key"
    );
    let operator = make_key(&app, &app.key, json!({"role": "operator"})).await;
    assert_eq!(operator["role"], "operator");
    let operator_key = operator["key"].as_str().expect("a key").to_owned();
    assert_eq!(
        status_with(&app.url, "GET", "/admin/queue", &operator_key).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&app.url, "GET", "/admin/queue", &member_key).await,
        StatusCode::FORBIDDEN
    );
    let operator_id = operator["id"].as_str().expect("an id");
    for (method, path) in [
        ("DELETE", format!("/api-keys/{operator_id}")),
        ("POST", format!("/api-keys/{operator_id}/rotate")),
    ] {
        let (status, _) = app
            .call_with_key(method, &path, None, Some(&member_key))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} by a member");
    }
    // A key of another organization is not there for this one.
    let other = Uuid::new_v4().simple().to_string();
    let other_key = format!("sw_{other}");
    syncway_store::api_keys::ensure_organization_with_key(&app.db().await, &other, &other_key)
        .await
        .expect("another organization");
    let (status, _) = app
        .call_with_key(
            "DELETE",
            &format!("/api-keys/{operator_id}"),
            None,
            Some(&other_key),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An expired key is refused like an unknown one.
    app.db()
        .await
        .execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&Uuid::parse_str(member["id"].as_str().expect("an id")).expect("a uuid")],
        )
        .await
        .expect("expiring the key");
    assert_eq!(
        status_with(&app.url, "GET", "/api-keys", &member_key).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_new_bootstrap_value_revokes_the_key_of_the_old_one() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let old = app.key.clone();
    let new = format!("sw_{}", Uuid::new_v4().simple());
    let mut settings = app.env.settings();
    settings.auth.bootstrap_api_key = Some(new.clone().into());
    let (second, url) = start_api(settings).await;
    assert_eq!(
        status_with(&url, "GET", "/api-keys", &old).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_with(&url, "GET", "/admin/queue", &new).await,
        StatusCode::OK,
        "the bootstrap key is an operator key"
    );
    second.shutdown().await.expect("a clean shutdown");
}

fn field<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("no {name} in {output}"))
}

#[tokio::test]
async fn the_operator_commands_make_organizations_and_keys() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let (ok, out, err) = api_command(&app.env, &["org", "create", "acme"]);
    assert!(ok, "{err}");
    let organization = field(&out, "organization_id").to_owned();
    let first = field(&out, "api_key").to_owned();
    assert_key_format(&first);
    assert!(err.contains("shown only now"));
    assert_eq!(
        status_with(&app.url, "GET", "/api-keys", &first).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&app.url, "GET", "/admin/queue", &first).await,
        StatusCode::FORBIDDEN,
        "a new organization's first key is a member key"
    );
    let (ok, _, err) = api_command(&app.env, &["org", "create", "acme"]);
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, out, _) = api_command(&app.env, &["org", "list"]);
    assert!(ok);
    let acme = out
        .lines()
        .find(|line| line.contains("\tacme\t"))
        .expect("acme is listed");
    assert!(
        acme.starts_with(&organization) && acme.ends_with("\t1"),
        "{acme}"
    );

    // Operator keys belong to the operator organization only.
    let args = |org| {
        [
            "keys",
            "create",
            "--org",
            org,
            "--operator",
            "--name",
            "ops",
        ]
    };
    let (ok, _, err) = api_command(&app.env, &args("acme"));
    assert!(
        !ok && err.contains("operator organization \"default\"")
            && err.contains("SYNCWAY_AUTH__OPERATOR_ORGANIZATION"),
        "{err}"
    );
    let (ok, out, err) = api_command(&app.env, &args("default"));
    assert!(ok, "{err}");
    assert_eq!(field(&out, "role"), "operator");
    let operator = field(&out, "api_key").to_owned();
    let operator_id = field(&out, "id").to_owned();
    assert_eq!(
        status_with(&app.url, "GET", "/admin/queue", &operator).await,
        StatusCode::OK
    );
    let (ok, out, _) = api_command(&app.env, &["keys", "list", "--org", "default"]);
    assert!(ok);
    assert!(out.contains(&operator[..11]) && !out.contains(&operator));
    assert!(!out.contains(&first));
    let (ok, out, err) = api_command(
        &app.env,
        &["keys", "revoke", "--org", "default", &operator_id],
    );
    assert!(ok, "{err}");
    assert!(out.contains(&operator_id));
    assert_eq!(
        status_with(&app.url, "GET", "/admin/queue", &operator).await,
        StatusCode::FORBIDDEN
    );
    let (ok, _, err) = api_command(&app.env, &["keys", "list", "--org", "nobody"]);
    assert!(!ok && err.contains("no organization"), "{err}");
}

#[tokio::test]
async fn an_operator_key_of_another_organization_is_a_member_key() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let (ok, out, err) = api_command(&app.env, &["org", "create", "acme"]);
    assert!(ok, "{err}");
    let member = field(&out, "api_key").to_owned();
    // Made while acme was named the operator organization (or before the
    // setting existed): an operator key of acme.
    let (ok, out, err) = api_command_with(
        &app.env,
        &[("SYNCWAY_AUTH__OPERATOR_ORGANIZATION", "acme")],
        &["keys", "create", "--org", "acme", "--operator"],
    );
    assert!(ok, "{err}");
    let stray = field(&out, "api_key").to_owned();
    let stray_id = field(&out, "id").to_owned();
    // This deployment's operator organization is "default": the key sees
    // no tenant's dead letters and makes no operator keys.
    for path in ["/admin/queue", "/admin/dead-letters"] {
        assert_eq!(
            status_with(&app.url, "GET", path, &stray).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let (status, _) = app
        .call_with_key(
            "POST",
            "/api-keys",
            Some(json!({"role": "operator"})),
            Some(&stray),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // It still works as a member key of acme, and acme's members may
    // revoke it.
    assert_eq!(
        status_with(&app.url, "GET", "/api-keys", &stray).await,
        StatusCode::OK
    );
    let (status, body) = app
        .call_with_key(
            "DELETE",
            &format!("/api-keys/{stray_id}"),
            None,
            Some(&member),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        status_with(&app.url, "GET", "/api-keys", &stray).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn an_api_process_says_once_at_start_how_many_stray_operator_keys_there_are() {
    let env = TestEnv::new().await;
    let (ok, _, err) = api_command(&env, &["org", "create", "acme"]);
    assert!(ok, "{err}");
    let (ok, _, err) = api_command_with(
        &env,
        &[("SYNCWAY_AUTH__OPERATOR_ORGANIZATION", "acme")],
        &["keys", "create", "--org", "acme", "--operator"],
    );
    assert!(ok, "{err}");
    let log = std::env::temp_dir().join(format!("syncway-api-log-{}", Uuid::new_v4()));
    let file = std::fs::File::create(&log).expect("a log file");
    let _api = ApiProcess::start_logging(&env, &[], file.into()).await;
    let warning = "operator keys of other organizations act as member keys only";
    let text = eventually("the stray-key warning", DEADLINE, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains(warning).then_some(text)
    })
    .await;
    let _ = std::fs::remove_file(&log);
    assert_eq!(text.matches(warning).count(), 1, "{text}");
    assert!(text.contains("stray=1"), "{text}");
}
