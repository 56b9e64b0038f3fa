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

/// One statement's jobs share one outbox row (V23): a batch of API triggers
/// costs the outbox one insert and one delete, not one of each per job. The
/// row's messages are published in order and every job runs, once.
#[tokio::test]
async fn a_trigger_batch_writes_one_outbox_row_whose_every_message_is_published() {
    use syncway_store::api_keys::digest;
    use syncway_store::jobs::{TriggerRequest, Triggered, trigger_many};

    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let mut connections = Vec::new();
    for entities in 1..=5 {
        connections.push(
            app.stub_connection(json!({"entity_count": entities}), false)
                .await,
        );
    }
    // No relay but the worker's, added once the row has been looked at.
    app.api.stop().await;
    let db = app.db().await;
    let requests: Vec<TriggerRequest> = connections
        .iter()
        .map(|connection| TriggerRequest {
            key_digest: digest(&app.key),
            source_connection_id: *connection,
            force_full_sync: false,
            allow_mass_deletion: false,
            request_id: None,
            client_address: None,
        })
        .collect();
    let jobs: Vec<Uuid> = trigger_many(&db, &requests)
        .await
        .expect("a batch of triggers")
        .into_iter()
        .map(|answer| match answer {
            Triggered::Created(job) => job.id,
            other => panic!("every trigger makes a job: {other:?}"),
        })
        .collect();

    let row = db
        .query_one(
            "SELECT count(*) OVER (), job_id, more_job_ids, kind,
                    (SELECT count(*) FROM outbox_jobs)
             FROM outbox",
            &[],
        )
        .await
        .expect("exactly one outbox row");
    assert_eq!(row.get::<_, i64>(0), 1, "one row for the batch");
    let mut in_row = vec![row.get::<_, Uuid>(1)];
    in_row.extend(row.get::<_, Vec<Uuid>>(2));
    assert_eq!(in_row, jobs, "every job's message, in request order");
    assert_eq!(row.get::<_, &str>(3), "manual");
    assert_eq!(row.get::<_, i64>(4), 5, "the backlog counts messages");

    app.add_worker(|_| {}).await;
    for (n, job) in jobs.iter().enumerate() {
        let done = finished(&db, *job).await;
        assert_eq!(done.0, "completed", "{job}");
        assert_eq!(done.1, [n as i64 + 1, 0, 0, 0], "{job}");
        assert_eq!(app.attempt(*job).await, 1, "{job}");
    }
    assert_eq!(
        app.workers[0]
            .metric("syncway_worker_outbox_published_total")
            .await,
        5.0,
        "each message counted"
    );
}

/// A batch row's messages go the same way, so the broker refuses them
/// alike: the row is set aside as a whole, each of its jobs failed with the
/// reason and counted, while the row beside it flows.
#[tokio::test]
async fn a_refused_batch_row_is_set_aside_as_a_whole_and_the_others_flow() {
    let app = crate::harness::TestApp::spawn().await;
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(app.stub_connection(json!({"entity_count": 1}), false).await);
    }
    // No queue for delays of 5-8 s: a message routed there is unroutable.
    app.env.delete_queue("sync_jobs.delay.3").await;
    let jobs: Vec<Uuid> = connections.iter().map(|_| Uuid::now_v7()).collect();
    let payloads: Vec<Vec<u8>> = jobs
        .iter()
        .zip(&connections)
        .map(|(job, connection)| JobMessage::new(*job, *connection).encode())
        .collect();
    let mut db = app.db().await;
    let transaction = db.transaction().await.expect("a transaction");
    transaction
        .execute(
            "INSERT INTO sync_jobs (id, source_connection_id)
             SELECT * FROM unnest($1::uuid[], $2::uuid[])",
            &[&jobs, &connections],
        )
        .await
        .expect("the jobs");
    // The first three in one row to the missing queue; the last alone.
    transaction
        .execute(
            "INSERT INTO outbox (job_id, payload, kind, delay_ms, more_job_ids, more_payloads)
             VALUES ($1, $2, 'job', 6000, $3, $4), ($5, $6, 'job', 0, '{}', '{}')",
            &[
                &jobs[0],
                &payloads[0],
                &jobs[1..3].to_vec(),
                &payloads[1..3].to_vec(),
                &jobs[3],
                &payloads[3],
            ],
        )
        .await
        .expect("the rows");
    transaction.commit().await.expect("committing");

    for (n, (job, connection)) in jobs.iter().zip(&connections).enumerate() {
        let done = app.finished_job(*connection, *job).await;
        if n < 3 {
            assert_eq!(done["status"], "failed", "{done}");
            assert_eq!(done["error_details"]["kind"], "unpublishable", "{done}");
        } else {
            assert_eq!(done["status"], "completed", "{done}");
        }
    }
    app.outbox_refused(3.0).await;
    app.outbox_empties().await;
}
