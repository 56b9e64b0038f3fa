//! Every process relays the outbox: with every API process stopped, what
//! workers commit to it (retries, re-enqueues of lost messages, scheduled
//! runs) still reaches the broker and runs.

use serde_json::json;
use syncway_model::JobMessage;
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv};

#[tokio::test]
async fn with_every_api_process_stopped_retries_re_enqueues_and_schedules_still_run() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // Incremental, failing after 40 entities each attempt: two retries.
    let flaky = app
        .stub_connection(json!({"entity_count": 100, "fail_after": 40}), true)
        .await;
    let lost = app
        .stub_connection(json!({"entity_count": 10}), false)
        .await;
    let scheduled = app
        .stub_connection(json!({"entity_count": 10}), false)
        .await;
    let retried = app.run(flaky, false).await;
    let db = app.db().await;
    app.outbox_empties().await;
    app.api.stop().await;

    // With no API process: a job whose message was lost (a minute old, no
    // message anywhere), and a scheduled run (its message in the outbox, as
    // the scheduler writes it).
    let lost_job = Uuid::now_v7();
    db.execute(
        "INSERT INTO sync_jobs (id, source_connection_id, created_at)
         VALUES ($1, $2, now() - interval '1 minute')",
        &[&lost_job, &lost],
    )
    .await
    .expect("a job whose message was lost");
    let scheduled_job = Uuid::now_v7();
    db.execute(
        "INSERT INTO sync_jobs (id, source_connection_id, trigger, scheduled_for)
         VALUES ($1, $2, 'schedule', now())",
        &[&scheduled_job, &scheduled],
    )
    .await
    .expect("a scheduled job");
    db.execute(
        "INSERT INTO outbox (job_id, payload) VALUES ($1, $2)",
        &[
            &scheduled_job,
            &JobMessage::new(scheduled_job, scheduled).encode(),
        ],
    )
    .await
    .expect("its message");

    app.add_worker(|settings| {
        settings.retry.max_attempts = 5;
        settings.retry.base_delay_ms = 100;
        settings.retry.max_delay_ms = 200;
        settings.worker.reap_interval_seconds = 1;
        settings.worker.requeue_after_seconds = 1;
    })
    .await;
    for (job, entities, attempts) in [(retried, 100, 3), (lost_job, 10, 1), (scheduled_job, 10, 1)]
    {
        let done = finished(&db, job).await;
        assert_eq!(done.0, "completed", "{job}");
        assert_eq!(done.1, [entities, 0, 0, 0], "{job}");
        assert_eq!(app.attempt(job).await, attempts, "{job}");
    }
    // The worker's relay published all of it: two retries, the
    // re-enqueued job, the scheduled one.
    let published = app.workers[0]
        .metric("syncway_worker_outbox_published_total")
        .await;
    assert!(published >= 4.0, "{published}");
}

/// The job's status and counts once it ended (read from the database: the
/// API is stopped).
async fn finished(db: &deadpool_postgres::Object, job: Uuid) -> (String, [i64; 4]) {
    crate::harness::eventually("the job ends", crate::harness::DEADLINE, || async {
        let row = db
            .query_one(
                "SELECT status, entities_inserted, entities_updated, entities_deleted,
                        entities_failed
                 FROM sync_jobs WHERE id = $1 AND completed_at IS NOT NULL",
                &[&job],
            )
            .await
            .ok()?;
        Some((
            row.get::<_, String>(0),
            [row.get(1), row.get(2), row.get(3), row.get(4)],
        ))
    })
    .await
}
