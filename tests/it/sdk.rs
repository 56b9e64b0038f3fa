//! Airweave's own Python SDK, unchanged, against syncway: create a
//! collection and a scheduled connection, run it, watch its job to the end,
//! read, list, update and delete (tests/sdk/python_flow.py). scripts/test
//! installs the SDK (airweave-sdk from PyPI) in a virtualenv and names its
//! Python in SYNCWAY_SDK_PYTHON.

use crate::harness::TestApp;

#[tokio::test]
async fn airweaves_python_sdk_runs_its_flows_unchanged() {
    let python = std::env::var("SYNCWAY_SDK_PYTHON").expect(
        "SYNCWAY_SDK_PYTHON names a Python with airweave-sdk installed: run the tests with scripts/test",
    );
    let app = TestApp::spawn().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/python_flow.py");
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
        "the SDK flow failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
