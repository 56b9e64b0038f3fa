//! A fence per claim: every write of a run is fenced by its claim's lease
//! token, not by the worker's name, so a later claim shuts an earlier run
//! out even in the same process; and a process never starts a second run
//! of a job it runs.

use serde_json::json;
use syncway_model::{JobMessage, JobStatus};
use syncway_store::jobs::{
    self, Batch, Bulk, Claim, ClaimedJob, Commit, Counts, EntityWrite, Probe, claim,
};
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv, counts};

const WORKER: &str = "fencing-test-worker";

async fn claimed(db: &deadpool_postgres::Object, job: Uuid) -> ClaimedJob {
    match claim(db, job, WORKER, 30.0).await.expect("the claim runs") {
        Claim::Claimed(claimed) => *claimed,
        other => panic!("not claimed: {other:?}"),
    }
}

/// A batch of `entities` for the job, from the run whose claim drew `lease`.
fn commit(
    job: Uuid,
    connection: Uuid,
    lease: Uuid,
    seq: i64,
    entities: &[EntityWrite],
) -> Commit<'_> {
    Commit {
        job_id: job,
        source_connection_id: connection,
        run_id: lease,
        seq,
        batch: Batch {
            entities,
            ..Batch::default()
        },
        outcome: None,
    }
}

fn entities(prefix: &str, count: usize) -> Vec<EntityWrite> {
    (0..count)
        .map(|i| {
            let id = format!("{prefix}{i}");
            EntityWrite::new(id.clone(), &json!({ "id": id })).expect("JSON")
        })
        .collect()
}

#[tokio::test]
async fn a_later_claim_by_the_same_process_shuts_the_earlier_run_out() {
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let mut db = app.db().await;
    let connection = app.stub_connection(json!({}), false).await;
    let job = app.run(connection, false).await;
    let (first_batch, late_batch, second_batch) =
        (entities("a", 1), entities("late", 1), entities("b", 1));
    let large = entities("big", jobs::BULK_ENTITIES);

    // The first claim writes a batch.
    let first = claimed(&db, job).await;
    let written = jobs::commit_batch(
        &db,
        30.0,
        &commit(job, connection, first.lease, 1, &first_batch),
    )
    .await
    .expect("the batch commits");
    assert_eq!(
        written.map(|(status, counts)| (status, counts.inserted)),
        Some((JobStatus::Running, 1))
    );

    // Its lease runs out (the process was cut off), and the same process
    // claims the job again: a second claim, with a token of its own.
    db.execute(
        "UPDATE sync_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&job],
    )
    .await
    .expect("the lease runs out");
    let second = claimed(&db, job).await;
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease, first.lease);

    // Every write of the first run is refused: nothing of it lands.
    let late = commit(job, connection, first.lease, 2, &late_batch);
    assert_eq!(
        jobs::commit_batch(&db, 30.0, &late).await.expect("runs"),
        None
    );
    let bulk: Bulk = jobs::commit_bulk(
        &mut db,
        30.0,
        &commit(job, connection, first.lease, 2, &large),
        Probe::First,
    )
    .await
    .expect("runs");
    assert!(bulk.written.is_none(), "{bulk:?}");
    assert_eq!(
        jobs::heartbeat(&db, job, first.lease, 30.0)
            .await
            .expect("runs"),
        None
    );
    let message = JobMessage::new(job, connection);
    let retry = jobs::schedule_retry(
        &db,
        &message,
        first.lease,
        std::time::Duration::from_secs(5),
        "late",
        &json!({}),
    )
    .await
    .expect("runs");
    assert!(!retry);
    assert!(!jobs::release(&db, job, first.lease).await.expect("runs"));

    // The second run's writes land, numbered from 1 again.
    assert_eq!(
        jobs::heartbeat(&db, job, second.lease, 30.0)
            .await
            .expect("runs"),
        Some(JobStatus::Running)
    );
    let written = jobs::commit_batch(
        &db,
        30.0,
        &commit(job, connection, second.lease, 1, &second_batch),
    )
    .await
    .expect("the batch commits");
    assert_eq!(
        written,
        Some((
            JobStatus::Running,
            Counts {
                inserted: 1,
                ..Counts::default()
            }
        ))
    );
    let stored: Vec<String> = db
        .query(
            "SELECT entity_id FROM entities WHERE source_connection_id = $1 ORDER BY 1",
            &[&connection],
        )
        .await
        .expect("entities")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, ["a0", "b0"]);
    let job_now = app.job(connection, job).await;
    assert_eq!(counts(&job_now), [2, 0, 0, 0], "{job_now}");
    assert!(jobs::release(&db, job, second.lease).await.expect("runs"));
}

#[tokio::test]
async fn a_process_never_starts_a_second_run_of_a_job_it_runs() {
    // A long lease: its renewal must not come between the lease made to
    // run out by hand below and the duplicate delivery.
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.worker.lease_seconds = 120)
        .await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 600, "delay_ms_per_entity": 5}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;

    // Its lease runs out (as when the process was cut off for longer than
    // the lease), and its own message comes back to it.
    let db = app.db().await;
    db.execute(
        "UPDATE sync_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&job],
    )
    .await
    .expect("the lease runs out");
    let broker = app.env.broker().await;
    let publisher = broker.publisher().await.expect("a publishing channel");
    publisher
        .publish_jobs(&[&JobMessage::new(job, connection).encode()])
        .await
        .expect("the duplicate is published");
    let worker = &app.workers[0];
    worker
        .wait_for_metric("syncway_worker_duplicate_deliveries_total", 1.0)
        .await;
    publisher.close().await;
    broker.close().await;

    // One run: the first claim's, to the end, counted once.
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [600, 0, 0, 0], "{done}");
    assert_eq!(app.attempt(job).await, 1);
}
