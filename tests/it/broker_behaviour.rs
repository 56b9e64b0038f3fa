//! What RabbitMQ does on its own: closing a worker's connection while its
//! jobs run (a restart, a management action, `consumer_timeout`). The jobs
//! go on, every one runs once, and the worker never runs more than its
//! concurrency across the reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use syncway_testkit::rabbit::{PrivateRabbit, SHORT_CONSUMER_TIMEOUT};

use crate::harness::{DEADLINE, TestApp, TestEnv, counts, eventually};
use serde_json::{Value, json};

const MANAGEMENT: &str = "http://127.0.0.1:15672/api";

/// The management API's names of the connections named `client_name`.
async fn connections_named(client_name: &str) -> Vec<String> {
    let listed: Value = reqwest::Client::new()
        .get(format!("{MANAGEMENT}/connections"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("the RabbitMQ management API")
        .json()
        .await
        .expect("its JSON");
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["client_properties"]["connection_name"] == client_name)
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// Closes the connection, as `rabbitmqctl close_connection` does.
async fn close_connection(name: &str) {
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let response = reqwest::Client::new()
        .delete(format!(
            "{MANAGEMENT}/connections/{}",
            encoded.replace('+', "%20")
        ))
        .basic_auth("guest", Some("guest"))
        .header("X-Reason", "syncway test: the broker closes a consumer")
        .send()
        .await
        .expect("the RabbitMQ management API");
    assert!(
        response.status().is_success(),
        "closing {name}: {}",
        response.status()
    );
}

/// The id of the only worker registered.
async fn only_worker(app: &TestApp) -> String {
    let db = app.db().await;
    eventually("the worker registers", DEADLINE, || async {
        db.query_opt("SELECT id FROM workers", &[])
            .await
            .ok()
            .flatten()
            .map(|row| row.get(0))
    })
    .await
}

/// Samples, every 50 ms until aborted, how many jobs `worker` holds a live
/// lease of; keeps the most.
fn in_flight(app: &TestApp, worker: &str) -> (Arc<AtomicI64>, tokio::task::JoinHandle<()>) {
    let most = Arc::new(AtomicI64::new(0));
    let (kept, url, worker) = (most.clone(), app.env.database_url(), worker.to_owned());
    let sampler = tokio::spawn(async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("a sampling session");
        tokio::spawn(connection);
        loop {
            if let Ok(row) = client
                .query_one(
                    "SELECT count(*) FROM sync_jobs WHERE lease_owner = $1
                       AND status IN ('running', 'cancelling') AND lease_expires_at > now()",
                    &[&worker],
                )
                .await
            {
                kept.fetch_max(row.get(0), Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (most, sampler)
}

#[tokio::test]
async fn a_worker_never_runs_more_than_its_concurrency_across_reconnects() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.worker.concurrency = 2)
        .await;
    let db = app.db().await;
    let worker = only_worker(&app).await;
    // Six jobs of about two seconds each: three rounds of two.
    let jobs = app
        .stub_jobs(6, json!({"entity_count": 400, "delay_ms_per_entity": 5}))
        .await;

    let (most, sampler) = in_flight(&app, &worker);

    // Twice, while two jobs run, the broker closes the worker's connection.
    let mut closed: Vec<String> = Vec::new();
    for _ in 0..2 {
        eventually("two jobs running", DEADLINE, || async {
            let running: i64 = db
                .query_one(
                    "SELECT count(*) FROM sync_jobs WHERE lease_owner = $1 AND status = 'running'",
                    &[&worker],
                )
                .await
                .ok()?
                .get(0);
            (running == 2).then_some(())
        })
        .await;
        let names = eventually("the worker's (new) connection", DEADLINE, || async {
            let names: Vec<String> = connections_named(&worker)
                .await
                .into_iter()
                .filter(|name| !closed.contains(name))
                .collect();
            (!names.is_empty()).then_some(names)
        })
        .await;
        for name in names {
            close_connection(&name).await;
            closed.push(name);
        }
    }

    // Every job completes once, counted exactly.
    for (connection, job) in &jobs {
        let done = app.finished_job(*connection, *job).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(counts(&done), [400, 0, 0, 0], "{done}");
        assert_eq!(app.attempt(*job).await, 1, "{done}");
    }
    sampler.abort();
    let most = most.load(Ordering::Relaxed);
    assert!(
        most <= 2,
        "{most} jobs ran at once on a worker of concurrency 2"
    );
    assert_eq!(most, 2, "the jobs did run two at a time");
}

/// RabbitMQ's own `consumer_timeout` (a node of the test's own, whose is
/// 3 s, checked every second) closes the channel of a worker running jobs
/// longer than that, again and again: the jobs go on, each runs once, and
/// the worker never runs more than its concurrency.
#[tokio::test]
async fn a_consumer_timeout_closes_channels_and_nothing_runs_twice_or_over_concurrency() {
    if !syncway_testkit::root() {
        eprintln!("skipped: a RabbitMQ node of the test's own runs as the rabbitmq user (root)");
        return;
    }
    let node = tokio::task::spawn_blocking(|| {
        PrivateRabbit::start("timeout", Some(SHORT_CONSUMER_TIMEOUT))
    })
    .await
    .expect("the node's thread")
    .expect("a RabbitMQ node of the test's own");
    let url = node.url();
    let mut app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.amqp.url = url.clone();
    })
    .await;
    app.add_worker(|settings| {
        settings.amqp.url = url.clone();
        settings.worker.concurrency = 2;
    })
    .await;
    let worker = only_worker(&app).await;
    let (most, sampler) = in_flight(&app, &worker);
    // Four jobs of about five seconds each: two rounds of two.
    let jobs = app
        .stub_jobs(4, json!({"entity_count": 1000, "delay_ms_per_entity": 5}))
        .await;
    for (connection, job) in &jobs {
        let done = app.finished_job(*connection, *job).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(counts(&done), [1000, 0, 0, 0], "{done}");
        assert_eq!(app.attempt(*job).await, 1, "{done}");
    }
    sampler.abort();
    let reconnects = app.workers[0]
        .metric("syncway_worker_consumer_reconnects_total")
        .await;
    assert!(reconnects >= 1.0, "the node never closed a channel");
    let most = most.load(Ordering::Relaxed);
    assert!(
        most <= 2,
        "{most} jobs ran at once on a worker of concurrency 2"
    );
    eprintln!(
        "consumer_timeout: {reconnects} channels closed by the node, at most {most} jobs at once"
    );
    drop(app);
    tokio::task::spawn_blocking(move || drop(node))
        .await
        .expect("stopping the node");
}
