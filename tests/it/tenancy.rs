//! No tenant can stop or starve another (invariant 11): a message the
//! broker refuses is set aside rather than retried ahead of everything, and
//! the fair share keeps one organization from holding every worker.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use syncway_model::JobMessage;
use uuid::Uuid;

use crate::harness::{DEADLINE, TestApp, counts, eventually, id_of};

#[tokio::test]
async fn a_message_the_broker_refuses_is_set_aside_and_the_others_flow() {
    let app = TestApp::spawn().await;
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(app.stub_connection(json!({"entity_count": 1}), false).await);
    }
    // No queue for delays of 5-8 s any more: a message routed there comes
    // back unroutable, however often it is published.
    app.env.delete_queue("sync_jobs.delay.3").await;
    // Four jobs committed at once; the second one's message is the refused one.
    let jobs: Vec<Uuid> = connections.iter().map(|_| Uuid::now_v7()).collect();
    let mut db = app.db().await;
    let transaction = db.transaction().await.expect("a transaction");
    for (n, (job, connection)) in jobs.iter().zip(&connections).enumerate() {
        transaction
            .execute(
                "INSERT INTO sync_jobs (id, source_connection_id) VALUES ($1, $2)",
                &[job, connection],
            )
            .await
            .expect("a job");
        let delay: i64 = if n == 1 { 6000 } else { 0 };
        transaction
            .execute(
                "INSERT INTO outbox (job_id, payload, kind, delay_ms) VALUES ($1, $2, 'job', $3)",
                &[job, &JobMessage::new(*job, *connection).encode(), &delay],
            )
            .await
            .expect("its message");
    }
    transaction.commit().await.expect("committing");

    for (n, (job, connection)) in jobs.iter().zip(&connections).enumerate() {
        let done = app.finished_job(*connection, *job).await;
        if n == 1 {
            assert_eq!(done["status"], "failed", "{done}");
            assert_eq!(done["error_details"]["kind"], "unpublishable", "{done}");
            assert!(
                done["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("refused")),
                "{done}"
            );
        } else {
            assert_eq!(done["status"], "completed", "{done}");
        }
    }
    // Set aside by whichever relay took it: the API's or the worker's.
    app.outbox_refused(1.0).await;
    // The outbox empties (a message's row goes when its transaction
    // commits, just after the broker confirmed it: its job may finish
    // first) and new triggers still flow.
    app.outbox_empties().await;
    let job = app.sync(connections[1], false).await;
    assert_eq!(job["status"], "completed", "{job}");
}

#[tokio::test]
async fn one_organization_cannot_hold_every_worker() {
    let mut app = TestApp::with_api(crate::harness::TestEnv::new().await, |_| {}).await;
    // Capacity 4, fair share 2.
    app.add_worker(|settings| {
        settings.worker.concurrency = 4;
        settings.limits.max_running_jobs_per_org = Some(2);
    })
    .await;
    // Organization B, made directly in the store (organization management
    // comes with the API-keys issue).
    let key_b = format!("sw_test_b_{}", Uuid::new_v4().simple());
    let org_b = syncway_store::api_keys::ensure_organization_with_key(&app.db().await, "b", &key_b)
        .await
        .expect("organization b");
    // A: 20 jobs of about half a second each.
    let mut a_jobs = Vec::new();
    for _ in 0..20 {
        let connection = app
            .stub_connection(
                json!({"entity_count": 10, "delay_ms_per_entity": 50}),
                false,
            )
            .await;
        a_jobs.push((connection, app.run(connection, false).await));
    }
    // B: one job, triggered after all of A's.
    let (status, collection) = app
        .call_with_key(
            "POST",
            "/collections",
            Some(json!({"name": "B"})),
            Some(&key_b),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{collection}");
    let (status, body) = app
        .call_with_key(
            "POST",
            "/source-connections",
            Some(
                json!({"short_name": "stub", "readable_collection_id": collection["readable_id"],
                        "config": {"entity_count": 1}}),
            ),
            Some(&key_b),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let b_connection = id_of(&body);
    let (status, body) = app
        .call_with_key(
            "POST",
            &format!("/source-connections/{b_connection}/run"),
            None,
            Some(&key_b),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let b_job = id_of(&body);

    // Until B's job completes, A never holds more than its share, and
    // B's job does not wait for A's to drain.
    let db = app.db().await;
    let a_org: Uuid = db
        .query_one(
            "SELECT organization_id FROM source_connections WHERE id = $1",
            &[&a_jobs[0].0],
        )
        .await
        .map(|row| row.get(0))
        .expect("organization a");
    assert_ne!(a_org, org_b);
    let started = Instant::now();
    let mut most_a_running = 0;
    let a_done_when_b_done = loop {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE s.organization_id = $1 AND j.status = 'running'
                                         AND j.lease_owner IS NOT NULL),
                        count(*) FILTER (WHERE s.organization_id = $1 AND j.status = 'completed'),
                        bool_or(j.id = $2 AND j.status = 'completed')
                 FROM sync_jobs j JOIN source_connections s ON s.id = j.source_connection_id",
                &[&a_org, &b_job],
            )
            .await
            .expect("sampling the jobs");
        most_a_running = most_a_running.max(row.get::<_, i64>(0));
        if row.get::<_, Option<bool>>(2) == Some(true) {
            break row.get::<_, i64>(1);
        }
        assert!(started.elapsed() < DEADLINE, "B's job did not complete");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(most_a_running <= 2, "A ran {most_a_running} jobs at once");
    assert!(a_done_when_b_done < 20, "B's job waited for all of A's");

    // A's jobs all complete in the end, each with its first attempt.
    for (connection, job) in &a_jobs {
        let done = eventually("A's jobs to complete", Duration::from_secs(60), || async {
            let job = app.job(*connection, *job).await;
            (job["status"] == "completed").then_some(job)
        })
        .await;
        assert_eq!(counts(&done), [10, 0, 0, 0], "{done}");
    }
    let attempts: HashSet<i32> = db
        .query(
            "SELECT attempt FROM sync_jobs WHERE id = ANY($1)",
            &[&a_jobs.iter().map(|(_, j)| *j).collect::<Vec<_>>()],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(attempts, HashSet::from([1]));
    assert!(most_a_running >= 1);
    // Waiting cost nothing: each of A's jobs was held about once (it waited
    // in Postgres, not in a claim-and-publish loop), and messages went out
    // only for the 21 triggers and the releases.
    let worker = &app.workers[0];
    let waits = worker.metric("syncway_worker_fair_share_waits_total").await;
    let claimed = worker.metric("syncway_worker_jobs_claimed_total").await;
    let published = app.api.metric("syncway_api_outbox_published_total").await
        + worker.metric("syncway_worker_outbox_published_total").await;
    eprintln!("fair share: 21 jobs, {waits} held, {claimed} claimed, {published} published");
    assert_eq!(claimed, 21.0);
    assert!(waits <= 30.0, "{waits} holds for 20 jobs");
    assert!(published <= 50.0, "{published} messages for 21 jobs");
}
