//! schemathesis (PyPI, pinned in scripts/test, named by SYNCWAY_SCHEMATHESIS)
//! against a running API with a seeded stub connection and the API's
//! default limits (the failed-auth budget included): every operation but
//! the event streams, positive and negative cases, every phase (examples,
//! coverage, fuzzing and the stateful one, which follows the description's
//! links) and every check. Zero failures is the bar; each failure it found
//! became a regression test in `fuzz_regressions.rs`.
//!
//! `SYNCWAY_FUZZ_EXAMPLES` sets the examples per operation (default 25, to
//! fit CI's time) and `SYNCWAY_FUZZ_SEED` the seed (default 14), for longer
//! runs by hand.

use serde_json::json;

use crate::harness::{TestApp, TestEnv};

#[tokio::test]
async fn schemathesis_finds_no_failure() {
    let schemathesis = std::env::var("SYNCWAY_SCHEMATHESIS").expect(
        "SYNCWAY_SCHEMATHESIS names the schemathesis command: run the tests with scripts/test",
    );
    let examples = std::env::var("SYNCWAY_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".to_owned());
    let seed = std::env::var("SYNCWAY_FUZZ_SEED").unwrap_or_else(|_| "14".to_owned());
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // The seeded objects: a collection, a stub connection and a job of it
    // (no worker runs: it stays pending).
    let (_, collection) = app
        .call(
            "POST",
            "/collections",
            Some(json!({"name": "fuzz", "readable_id": "fuzz-seed"})),
        )
        .await;
    let connection = app
        .stub_connection(json!({"entity_count": 10}), false)
        .await;
    let job = app.run(connection, false).await;
    // The stateful phase follows links from listing keys to revoking and
    // rotating them: with the bootstrap (operator) key it would revoke the
    // key it runs with. Those two operations use a member key, which may
    // not touch operator keys (403), only the member keys the run made.
    let (_, member) = app
        .call("POST", "/api-keys", Some(json!({"name": "fuzz"})))
        .await;
    let member = member["key"].as_str().expect("a member key").to_owned();
    let directory = std::env::temp_dir().join(format!("syncway-fuzz-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&directory).expect("a directory for the fuzzer");
    let config = format!(
        r#"
headers = {{ "x-api-key" = "{key}" }}
# No string the API reads may hold a NUL (the description says so; every
# place one can go is tested in nul_input.rs): strings with one are not
# valid input, however schema-valid the rest is.
generation.allow-x00 = false

[[operations]]
include-operation-id = ["revokeApiKey", "rotateApiKey"]
headers = {{ "x-api-key" = "{member}" }}

# A config schema-valid for some connector may not be valid for the one
# short_name names, and the operator's egress policy refuses addresses no
# schema can describe: both are 422 for schema-valid input. Likewise an
# entity page's `after` is opaque: only a `next` value the API gave is one.
# A webhook subscription's URL passes the same policy.
[[operations]]
include-operation-id = ["createSourceConnection", "updateSourceConnection", "listEntities", "createWebhookSubscription", "patchWebhookSubscription"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[dictionaries.connections]
values = ["{connection}"]
[dictionaries.jobs]
values = ["{job}"]
[dictionaries.collections]
values = ["{collection}"]

[parameters]
"path.source_connection_id" = {{ dictionary = "connections", probability = 0.7 }}
"path.job_id" = {{ dictionary = "jobs", probability = 0.7 }}
"path.readable_id" = {{ dictionary = "collections", probability = 0.7 }}
"query.collection" = {{ dictionary = "collections", probability = 0.5 }}
"body.readable_collection_id" = {{ dictionary = "collections", probability = 0.8 }}
"#,
        collection = collection["readable_id"].as_str().expect("a readable id"),
        key = app.key,
    );
    let config_path = directory.join("schemathesis.toml");
    std::fs::write(&config_path, config).expect("writing the fuzzer's config");
    let url = app.url.clone();
    let report = directory.join("report");
    let directory_for_run = directory.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis)
            // Its cache goes where it runs: the temporary directory.
            .current_dir(&directory_for_run)
            .arg("--config-file")
            .arg(&config_path)
            .args(["run", &format!("{url}/openapi.json")])
            .args(["--url", &url])
            .args(["--checks", "all"])
            .args(["--mode", "all"])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", &examples])
            .args(["--seed", &seed])
            .args(["--workers", "1"])
            .args(["--exclude-path-regex", "/(events|subscribe)$"])
            .args(["--request-timeout", "10"])
            .args(["--report", "junit", "--report-dir"])
            .arg(&report)
            .env("NO_COLOR", "1")
            .output()
    })
    .await
    .expect("the fuzzer's thread")
    .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The totals go to the test's output (cargo test -- --nocapture).
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&directory);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
