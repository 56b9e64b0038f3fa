//! schemathesis (PyPI, pinned in scripts/test, named by SYNCWAY_SCHEMATHESIS)
//! against a running API with a seeded stub connection: every operation
//! but the event streams, positive and negative cases, with the checks
//! `not_a_server_error`, `status_code_conformance`,
//! `content_type_conformance` and `response_schema_conformance`. Zero
//! failures is the bar; each failure it found became a regression test in
//! `fuzz_regressions.rs`.
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
    let app = TestApp::with_api(TestEnv::new().await, |settings| {
        // Negative cases send made-up keys only by accident; the fuzzer
        // must not be stopped by the per-address budget.
        settings.limits.failed_auth_per_minute = 1_000_000;
    })
    .await;
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
    let directory = std::env::temp_dir().join(format!("syncway-fuzz-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&directory).expect("a directory for the fuzzer");
    let config = format!(
        r#"
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
    );
    let config_path = directory.join("schemathesis.toml");
    std::fs::write(&config_path, config).expect("writing the fuzzer's config");
    let url = app.url.clone();
    let key = app.key.clone();
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
            .args(["--header", &format!("x-api-key: {key}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance",
            ])
            .args(["--mode", "all"])
            .args(["--phases", "examples,coverage,fuzzing"])
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
