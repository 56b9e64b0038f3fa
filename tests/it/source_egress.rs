//! The egress policy holds for the `mysql`, `s3` and `postgres_cdc`
//! connectors as for the others: an internal address is refused when the
//! connection is made (422) and, if an operator's API allowed it but the
//! worker's does not, when the job runs, before anything connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, TestEnv};

/// Each new connector, pointed at `port` on 127.0.0.1.
fn targets(port: u16) -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "mysql",
            json!({"table": "t"}),
            json!({"url": format!("mysql://root@127.0.0.1:{port}/db")}),
        ),
        (
            "s3",
            json!({"bucket": "docs", "endpoint": format!("http://127.0.0.1:{port}"),
                   "force_path_style": true}),
            json!({"access_key_id": "k", "secret_access_key": "s"}),
        ),
        (
            "postgres_cdc",
            json!({"tables": ["t"]}),
            json!({"url": format!("postgres://postgres@127.0.0.1:{port}/postgres")}),
        ),
    ]
}

#[tokio::test]
async fn internal_addresses_are_refused_when_the_connection_is_made() {
    let app = TestApp::spawn_with(0).await;
    let collection = app.create_collection().await;
    for (short_name, config, credentials) in targets(3306) {
        let (status, body) = app
            .call(
                "POST",
                "/source-connections",
                Some(json!({
                    "short_name": short_name, "readable_collection_id": collection,
                    "config": config, "authentication": {"credentials": credentials},
                })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{short_name}: {body}"
        );
        assert!(
            body.to_string().contains("ALLOW_CIDRS"),
            "{short_name}: {body}"
        );
    }
}

#[tokio::test]
async fn a_worker_whose_policy_denies_the_address_connects_to_nothing() {
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    app.add_worker(|settings| settings.connectors.allow_cidrs.clear())
        .await;
    // A listener that counts who connects.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let port = listener.local_addr().expect("its address").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let accepting = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    for (short_name, config, credentials) in targets(port) {
        let connection = app
            .connection_of(short_name, config, credentials, false)
            .await;
        let job = app.sync(connection, false).await;
        assert_eq!(job["status"], "failed", "{short_name}: {job}");
        assert_eq!(
            job["error_details"]["kind"], "permanent",
            "{short_name}: {job}"
        );
        assert!(
            job["error"]
                .as_str()
                .is_some_and(|e| e.contains("127.0.0.1") && e.contains("ALLOW_CIDRS")),
            "{short_name}: {job}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing connected");
    accepting.abort();
}
