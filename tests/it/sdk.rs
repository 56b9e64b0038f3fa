//! Airweave's own Python SDK, unchanged, against syncway: create a
//! collection and a scheduled connection, run it, watch its job to the end,
//! read, list, update and delete (tests/sdk/python_flow.py); and all eight
//! webhook calls, with the deliveries verified by the `standardwebhooks`
//! package (tests/sdk/webhook_flow.py). scripts/test installs both (from
//! PyPI) in a virtualenv and names its Python in SYNCWAY_SDK_PYTHON.

use crate::harness::{TestApp, TestEnv};

async fn run_flow(app: &TestApp, script: &'static str) {
    let python = std::env::var("SYNCWAY_SDK_PYTHON").expect(
        "SYNCWAY_SDK_PYTHON names a Python with airweave-sdk installed: run the tests with scripts/test",
    );
    let (url, key) = (app.url.clone(), app.key.clone());
    // The API runs on this test's runtime: the script waits on a thread of
    // its own.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, &url, &key])
            .output()
    })
    .await
    .expect("the SDK flow's thread")
    .expect("running the SDK flow");
    assert!(
        output.status.success(),
        "the SDK flow {script} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn airweaves_python_sdk_runs_its_flows_unchanged() {
    let app = TestApp::spawn().await;
    run_flow(
        &app,
        concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/python_flow.py"),
    )
    .await;
}

#[tokio::test]
async fn airweaves_python_sdk_runs_its_webhook_calls_unchanged() {
    // The flow's receiver listens on loopback, which the operator allows.
    let app = TestApp::spawn_on(TestEnv::new().await.allowing_loopback(), 1).await;
    run_flow(
        &app,
        concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/webhook_flow.py"),
    )
    .await;
}
