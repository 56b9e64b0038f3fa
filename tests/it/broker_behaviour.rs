//! What RabbitMQ does on its own: closing a worker's connection while its
//! jobs run (a restart, a management action, `consumer_timeout`). The jobs
//! go on, every one runs once, and the worker never runs more than its
//! concurrency across the reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

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

#[tokio::test]
async fn a_worker_never_runs_more_than_its_concurrency_across_reconnects() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.worker.concurrency = 2)
        .await;
    let db = app.db().await;
    let worker: String = eventually("the worker registers", DEADLINE, || async {
        db.query_opt("SELECT id FROM workers", &[])
            .await
            .ok()
            .flatten()
            .map(|row| row.get(0))
    })
    .await;
    // Six jobs of about two seconds each: three rounds of two.
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let connection = app
            .stub_connection(
                json!({"entity_count": 400, "delay_ms_per_entity": 5}),
                false,
            )
            .await;
        jobs.push((connection, app.run(connection, false).await));
    }

    // In flight: the jobs this worker holds a live lease of, every 50 ms.
    let most = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (most, url, worker) = (most.clone(), app.env.database_url(), worker.clone());
        tokio::spawn(async move {
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
                    most.fetch_max(row.get(0), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

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
