//! `syncway webhooks` (CONTRACT.md §10) against the real API: create,
//! list, get (with the secret), messages, recover, delete.

use serde_json::Value;

use crate::cli::{run_cli, stdout_json};
use crate::harness::TestApp;

#[tokio::test]
async fn the_cli_manages_webhook_subscriptions() {
    let app = TestApp::spawn_with(0).await;
    let made = stdout_json(
        &run_cli(
            &app,
            &[
                "webhooks",
                "create",
                "https://93.184.215.14/hook",
                "--events",
                "sync.completed,sync.failed",
            ],
        )
        .await,
    );
    let id = made["id"].as_str().expect("a subscription id").to_owned();
    assert_eq!(
        made["filter_types"],
        serde_json::json!(["sync.completed", "sync.failed"])
    );
    let listed = stdout_json(&run_cli(&app, &["webhooks", "list"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let shown = stdout_json(&run_cli(&app, &["webhooks", "get", &id, "--secret"]).await);
    assert!(
        shown["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{shown}"
    );
    let hidden = stdout_json(&run_cli(&app, &["webhooks", "get", &id]).await);
    assert!(hidden.get("secret").is_none(), "{hidden}");
    let messages =
        stdout_json(&run_cli(&app, &["webhooks", "messages", "--events", "sync.failed"]).await);
    assert_eq!(messages, Value::Array(Vec::new()));
    let recovered = stdout_json(
        &run_cli(
            &app,
            &[
                "webhooks",
                "recover",
                &id,
                "--since",
                "2026-01-01T00:00:00Z",
            ],
        )
        .await,
    );
    assert_eq!(recovered["status"], "completed", "{recovered}");
    // A mistake is the API's 422, exit code 3.
    let refused = run_cli(
        &app,
        &[
            "webhooks",
            "create",
            "http://169.254.169.254/",
            "--events",
            "sync.failed",
        ],
    )
    .await;
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("url"),
        "the error names the field"
    );
    stdout_json(&run_cli(&app, &["webhooks", "delete", &id]).await);
    let listed = stdout_json(&run_cli(&app, &["webhooks", "list"]).await);
    assert_eq!(listed, Value::Array(Vec::new()));
}
