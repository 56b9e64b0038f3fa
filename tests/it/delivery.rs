//! What the worker does with the messages it is given: duplicates run once,
//! messages for deleted jobs are dropped, garbage is dead-lettered.

use serde_json::json;
use syncway_model::JobMessage;

use crate::harness::{DEADLINE, TestApp, TestEnv, eventually};

async fn queue_depth(app: &TestApp, queue: &str) -> Option<u32> {
    let broker = app.env.broker().await;
    let depth = broker.queue_depth(queue).await.ok().flatten();
    broker.close().await;
    depth
}

#[tokio::test]
async fn a_message_delivered_twice_runs_once() {
    let app = TestApp::spawn().await;
    // Slow enough (about 1 s) that the copies arrive while it runs.
    let connection = app
        .stub_connection(
            json!({"entity_count": 200, "delay_ms_per_entity": 5}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    app.job_where(connection, job, "running", |job| job["status"] == "running")
        .await;

    let broker = app.env.broker().await;
    let copy = JobMessage::new(job, connection).encode();
    let publisher = broker.publisher().await.unwrap();
    publisher
        .publish_jobs(&[copy.as_slice(), copy.as_slice()])
        .await
        .unwrap();
    broker.close().await;

    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["entities_inserted"], 200, "nothing counted twice");
    let worker = &app.workers[0];
    worker
        .wait_for_metric("syncway_worker_duplicate_deliveries_total", 2.0)
        .await;
    assert_eq!(
        worker.metric("syncway_worker_jobs_claimed_total").await,
        1.0
    );
    assert_eq!(app.attempt(job).await, 1);
}

#[tokio::test]
async fn the_same_message_delivered_to_two_workers_at_once_runs_once() {
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // About a second of work, so that both copies are delivered while it runs.
    let connection = app
        .stub_connection(
            json!({"entity_count": 200, "delay_ms_per_entity": 5}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let queue = format!("{}.sync_jobs.manual", app.env.namespace);
    eventually("the message to be queued", DEADLINE, || async {
        (queue_depth(&app, &queue).await == Some(1)).then_some(())
    })
    .await;
    // A second copy, as a redelivery or a publish repeated after a lost
    // confirm would make.
    let broker = app.env.broker().await;
    let copy = JobMessage::new(job, connection).encode();
    let publisher = broker.publisher().await.unwrap();
    publisher.publish_jobs(&[copy.as_slice()]).await.unwrap();
    broker.close().await;

    // Two workers start together, each taking one message at a time.
    let settings = || {
        let mut settings = app.env.settings();
        settings.worker.concurrency = 1;
        settings
    };
    let (first, second) = tokio::join!(
        crate::harness::start_worker(settings()),
        crate::harness::start_worker(settings())
    );
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["entities_inserted"], 200, "nothing counted twice");
    let (claimed, _) = eventually("the copy to be dropped", DEADLINE, || async {
        let claimed = first.metric("syncway_worker_jobs_claimed_total").await
            + second.metric("syncway_worker_jobs_claimed_total").await;
        let duplicates = first
            .metric("syncway_worker_duplicate_deliveries_total")
            .await
            + second
                .metric("syncway_worker_duplicate_deliveries_total")
                .await;
        (duplicates == 1.0).then_some((claimed, duplicates))
    })
    .await;
    assert_eq!(claimed, 1.0);
    assert_eq!(app.attempt(job).await, 1);
}

#[tokio::test]
async fn a_message_for_a_deleted_connection_is_dropped_cleanly() {
    let env = TestEnv::new().await;
    let mut app = TestApp::with_api(env, |_| {}).await;
    let doomed = app.stub_connection(json!({}), false).await;
    let job = app.run(doomed, false).await;
    // The message is published; then its connection (and job) disappear.
    eventually("the message to be queued", DEADLINE, || async {
        (queue_depth(&app, &format!("{}.sync_jobs.manual", app.env.namespace)).await == Some(1))
            .then_some(())
    })
    .await;
    let (status, _) = app
        .call("DELETE", &format!("/source-connections/{doomed}"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);

    app.add_worker(|_| {}).await;
    let worker = &app.workers[0];
    worker
        .wait_for_metric("syncway_worker_dropped_messages_total", 1.0)
        .await;
    assert_eq!(
        worker.metric("syncway_worker_jobs_claimed_total").await,
        0.0
    );
    let row = app
        .db()
        .await
        .query_opt("SELECT 1 FROM sync_jobs WHERE id = $1", &[&job])
        .await;
    assert!(matches!(row, Ok(None)));
    assert_eq!(
        queue_depth(&app, &format!("{}.sync_jobs.dead", app.env.namespace)).await,
        Some(0)
    );

    // The worker carries on.
    let next = app.stub_connection(json!({"entity_count": 3}), false).await;
    let job = app.run(next, false).await;
    assert_eq!(app.finished_job(next, job).await["status"], "completed");
}

#[tokio::test]
async fn unreadable_messages_and_unknown_jobs_are_dead_lettered_and_the_worker_goes_on() {
    let app = TestApp::spawn().await;
    let broker = app.env.broker().await;
    let publisher = broker.publisher().await.unwrap();
    let future_version = format!(
        r#"{{"v":99,"job_id":"{}","source_connection_id":"{}"}}"#,
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4()
    );
    // A well-formed message naming a job that never existed.
    let no_job = JobMessage::new(uuid::Uuid::new_v4(), uuid::Uuid::new_v4()).encode();
    publisher
        .publish_jobs(&[
            b"not json".as_slice(),
            b"{}".as_slice(),
            future_version.as_bytes(),
            no_job.as_slice(),
        ])
        .await
        .unwrap();
    broker.close().await;

    let dead = format!("{}.sync_jobs.dead", app.env.namespace);
    eventually("four dead letters", DEADLINE, || async {
        (queue_depth(&app, &dead).await == Some(4)).then_some(())
    })
    .await;
    assert_eq!(
        app.workers[0]
            .metric("syncway_worker_dead_lettered_total")
            .await,
        4.0
    );

    let connection = app.stub_connection(json!({"entity_count": 5}), false).await;
    let job = app.run(connection, false).await;
    assert_eq!(
        app.finished_job(connection, job).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn one_claim_batch_answers_every_delivery_on_its_own() {
    use syncway_model::JobStatus;
    use syncway_store::jobs::{Claim, claim_many};
    use uuid::Uuid;

    // No worker: the test claims by hand.
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let pending = app
        .run(app.stub_connection(json!({}), false).await, false)
        .await;
    let held = app
        .run(app.stub_connection(json!({}), false).await, false)
        .await;
    let finished_connection = app.stub_connection(json!({}), false).await;
    let finished = app.run(finished_connection, false).await;
    let (status, _) = app
        .call(
            "POST",
            &format!("/source-connections/{finished_connection}/jobs/{finished}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let db = app.db().await;
    let claim = |ids: Vec<Uuid>, owner: &'static str| {
        let db = &db;
        async move { claim_many(db, &ids, owner, 30.0).await.unwrap() }
    };
    let first = claim(vec![held], "other-worker").await;
    assert!(matches!(first[..], [Claim::Claimed(_)]), "{first:?}");

    let answers = claim(vec![pending, pending, finished, Uuid::new_v4(), held], "me").await;
    let kinds: Vec<String> = answers
        .iter()
        .map(|answer| match answer {
            Claim::Claimed(job) => {
                assert_eq!(
                    (job.id, job.attempt, job.status),
                    (pending, 1, JobStatus::Running)
                );
                assert_eq!(job.source.short_name, "stub");
                "claimed".to_string()
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["claimed", "Held", "Finished(Cancelled)", "Missing", "Held"]
    );
    let owners: Vec<Option<String>> = db
        .query(
            "SELECT lease_owner FROM sync_jobs WHERE id = ANY($1) ORDER BY id",
            &[&vec![pending, held]],
        )
        .await
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .unwrap_or_default();
    let mut expected = vec![(pending, "me"), (held, "other-worker")];
    expected.sort();
    let expected: Vec<Option<String>> = expected
        .into_iter()
        .map(|(_, owner)| Some(owner.to_string()))
        .collect();
    assert_eq!(owners, expected);
}

#[tokio::test]
async fn a_message_redelivered_past_the_delivery_limit_is_dead_lettered() {
    // A message that keeps coming back (a worker crash loop requeues it each
    // time) is dead-lettered by the quorum queue's delivery limit.
    let env = TestEnv::new().await;
    let broker = env.broker().await;
    let message = JobMessage::new(uuid::Uuid::new_v4(), uuid::Uuid::new_v4()).encode();
    let publisher = broker.publisher().await.unwrap();
    publisher.publish_jobs(&[message.as_slice()]).await.unwrap();
    let mut consumer = broker.consume(1, "crash-loop").await.unwrap();
    let mut deliveries = 0;
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(2), consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            break;
        };
        deliveries += 1;
        assert!(
            deliveries <= 2 * syncway_queue::DELIVERY_LIMIT,
            "never dead-lettered"
        );
        delivery.requeue().await.unwrap();
    }
    consumer.close().await;
    let dead = broker.topology().dead_queue();
    eventually("the dead letter", DEADLINE, || async {
        (broker.queue_depth(&dead).await.ok().flatten() == Some(1)).then_some(())
    })
    .await;
    assert_eq!(deliveries, syncway_queue::DELIVERY_LIMIT + 1);
    broker.close().await;
}
