//! Steering from the command line: pauses, search, bulk actions, and a
//! watched job saying why it waits (its event stream carries the reason).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::cli::{run_cli, stdout_json};
use crate::harness::{DEADLINE, TestApp, eventually, id_of};

#[tokio::test]
async fn the_cli_pauses_searches_and_acts_in_bulk() {
    let app = TestApp::spawn().await;
    let paused = stdout_json(&run_cli(&app, &["pause", "--all", "--reason", "deploy"]).await);
    assert_eq!(paused["scope"], "all");
    assert_eq!(paused["reason"], "deploy");
    let pauses = stdout_json(&run_cli(&app, &["pauses", "--all"]).await);
    assert_eq!(pauses.as_array().map(Vec::len), Some(1), "{pauses}");

    // A watched run says why it waits, then follows the job to its end
    // once the deployment is resumed.
    let connection = app
        .stub_connection(serde_json::json!({"entity_count": 2}), false)
        .await
        .to_string();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_syncway-test-cli"))
        .args(["run", &connection, "--watch"])
        .env("SYNCWAY_URL", &app.url)
        .env("SYNCWAY_API_KEY", &app.key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the CLI");
    let stdout = watch.stdout.take().expect("the CLI's stdout");
    let (lines, mut states) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(state) = serde_json::from_str(&line) {
                let _ = lines.send(state);
            }
        }
    });
    let others = app
        .stub_jobs(3, serde_json::json!({"entity_count": 1}))
        .await;
    let found =
        stdout_json(&run_cli(&app, &["jobs", "--status", "pending", "--since", "1h"]).await);
    let items = found["items"].as_array().expect("a page of jobs");
    assert_eq!(items.len(), 4, "{found}");
    eventually(
        "every job to say it waits for the pause",
        DEADLINE,
        || async {
            let found = stdout_json(
                &run_cli(&app, &["jobs", "--status", "pending", "--since", "1h"]).await,
            );
            found["items"]
                .as_array()?
                .iter()
                .all(|job| job["waiting_reason"]["code"] == "paused_all")
                .then_some(())
        },
    )
    .await;

    // A dry run counts what a bulk action would act on.
    let counted = stdout_json(
        &run_cli(
            &app,
            &[
                "jobs",
                "bulk",
                "cancel",
                "--status",
                "pending",
                "--trigger",
                "api",
                "--dry-run",
            ],
        )
        .await,
    );
    assert_eq!(counted["matched"], 4, "{counted}");
    // The watch shows why its job waits before the resume.
    let waiting = tokio::time::timeout(DEADLINE, async {
        while let Some(state) = states.recv().await {
            if state["waiting_reason"]["code"] == "paused_all" {
                return Some(state);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("an event of the watched job waiting");
    assert_eq!(waiting["waiting_reason"]["code"], "paused_all", "{waiting}");
    let resumed = stdout_json(&run_cli(&app, &["resume", "--all"]).await);
    assert_eq!(resumed["scope"], "all");
    let status = tokio::task::spawn_blocking(move || watch.wait())
        .await
        .expect("the CLI's thread")
        .expect("waiting for the CLI");
    assert!(status.success(), "the watch ended {status}");
    reader.join().expect("the reader thread");
    let mut last = waiting.clone();
    while let Ok(state) = states.try_recv() {
        last = state;
    }
    assert_eq!(last["status"], "completed", "{last}");
    for (connection, job) in &others {
        app.finished_job(*connection, *job).await;
    }
    let failed =
        stdout_json(&run_cli(&app, &["jobs", "--status", "failed", "--since", "1h"]).await);
    assert_eq!(
        failed["items"].as_array().map(Vec::len),
        Some(0),
        "{failed}"
    );
    let bulk = stdout_json(&run_cli(&app, &["jobs", "bulk", "run", "--source", "stub"]).await);
    assert_eq!(bulk["status"], "completed", "{bulk}");
    assert_eq!(bulk["done"], 4, "{bulk}");
    let job = id_of(&app.jobs(others[1].0).await[0]);
    assert_ne!(job, others[1].1, "a new run of the connection");
    let bad = run_cli(&app, &["jobs", "--since", "soon"]).await;
    assert_eq!(bad.status.code(), Some(2));
}
