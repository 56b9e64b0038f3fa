//! A sync whose worker process is killed (SIGKILL) mid-sync and taken over
//! by another: what each connector must survive without doubles.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::{TestApp, WorkerProcess, eventually};

/// Short leases, so that the second worker takes over within seconds.
const LEASE: u64 = 2;

/// Runs a job on a worker process, kills that process once the job has
/// committed some entities, lets a second process take it over, and
/// returns the job as it was when killed and as it ended.
pub async fn sync_killed_mid_way(
    app: &TestApp,
    connection: Uuid,
    force_full_sync: bool,
) -> (Value, Value) {
    let settings = vec![
        ("SYNCWAY_WORKER__REAP_INTERVAL_SECONDS", "1".to_owned()),
        ("SYNCWAY_RETRY__MAX_ATTEMPTS", "5".to_owned()),
    ];
    let mut first = WorkerProcess::start(&app.env, LEASE, &settings);
    let job = app.run(connection, force_full_sync).await;
    let running = app
        .job_where(connection, job, "running with data, or its end", |job| {
            job["status"] != "pending"
                && (job["status"] != "running"
                    || job["entities_inserted"].as_i64() > Some(0)
                    || job["entities_updated"].as_i64() > Some(0))
        })
        .await;
    assert_eq!(running["status"], "running", "killed mid-sync: {running}");
    first.kill();
    let killed = app.job(connection, job).await;
    let _second = WorkerProcess::start(&app.env, LEASE, &settings);
    let done = eventually(
        "the job to end on the second worker",
        Duration::from_secs(60),
        || async {
            let job = app.job(connection, job).await;
            matches!(
                job["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
            .then_some(job)
        },
    )
    .await;
    assert_eq!(app.attempt(job).await, 2, "taken over once: {done}");
    (killed, done)
}
