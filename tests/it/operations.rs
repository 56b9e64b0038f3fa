//! What operators watch (CONTRACT.md §6): the worker registry, the
//! deployment's metrics from the shared snapshot, `/admin/queue` (operator
//! keys only), dead letters peeked and redriven, and every metric family
//! passing `promtool check metrics`.

use lapin::options::BasicPublishOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{ApiProcess, DEADLINE, TestApp, TestEnv, WorkerProcess, eventually};

/// An API refreshing its snapshot five times a second, workers beating
/// their registry heartbeat as often.
async fn app(workers: usize) -> TestApp {
    let mut app = TestApp::with_api(TestEnv::new().await, |settings| {
        settings.metrics.snapshot_interval_ms = 200;
    })
    .await;
    for _ in 0..workers {
        app.add_worker(|settings| settings.worker.heartbeat_seconds = 0.2)
            .await;
    }
    app
}

async fn admin_queue(app: &TestApp) -> Value {
    let (status, body) = app.call("GET", "/admin/queue", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Publishes `body` to the test's jobs queue, confirmed.
async fn publish_raw(app: &TestApp, body: &[u8]) {
    let queue = syncway_queue::Topology::new(&app.env.namespace).jobs_queue();
    publish_to("", &queue, body).await;
}

/// Publishes `body` to `exchange` with `routing_key`, confirmed.
async fn publish_to(exchange: &str, routing_key: &str, body: &[u8]) {
    let (_amqp, channel) = crate::harness::confirmed_channel().await;
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default(),
        )
        .await
        .expect("publishing")
        .await
        .expect("confirmed");
}

#[tokio::test]
async fn workers_register_deregister_on_shutdown_and_show_as_gone_when_killed() {
    let mut app = app(2).await;
    let body = eventually("two workers registered", DEADLINE, || async {
        let body = admin_queue(&app).await;
        (body["workers"].as_array().map(Vec::len) == Some(2)).then_some(body)
    })
    .await;
    let worker = &body["workers"][0];
    assert_eq!(worker["concurrency"], 4);
    assert!(worker["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(worker["version"].is_string() && worker["last_seen"].is_string());
    assert_eq!(worker["jobs_in_flight"], 0);
    app.api.wait_for_metric("syncway_workers", 2.0).await;

    // A clean shutdown removes the row at once.
    let first = app.workers.remove(0);
    first.shutdown().await.expect("a clean shutdown");
    eventually("one worker left", DEADLINE, || async {
        let body = admin_queue(&app).await;
        (body["workers"].as_array().map(Vec::len) == Some(1)
            && body["workers_gone"].as_array().map(Vec::len) == Some(0))
        .then_some(())
    })
    .await;

    // A killed one stops beating: gone after three heartbeats.
    let mut killed = WorkerProcess::start(
        &app.env,
        30,
        &[("SYNCWAY_WORKER__HEARTBEAT_SECONDS", "0.2".into())],
    );
    eventually("the process worker registered", DEADLINE, || async {
        (admin_queue(&app).await["workers"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    killed.kill();
    let body = eventually("the killed worker shown as gone", DEADLINE, || async {
        let body = admin_queue(&app).await;
        (body["workers_gone"].as_array().map(Vec::len) == Some(1)).then_some(body)
    })
    .await;
    assert_eq!(body["workers"].as_array().map(Vec::len), Some(1), "{body}");
    app.api.wait_for_metric("syncway_workers", 1.0).await;
}

#[tokio::test]
async fn the_snapshot_gives_queue_job_and_age_figures_and_in_flight_work_as_unacked() {
    // No worker yet: triggered jobs wait in the queue (the manual-runs
    // queue: they are triggered through the API).
    let mut app = app(0).await;
    let queue = syncway_queue::Topology::new(&app.env.namespace).manual_queue();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let connection = app
            .stub_connection(
                json!({"entity_count": 1500, "delay_ms_per_entity": 10}),
                false,
            )
            .await;
        app.run(connection, false).await;
        connections.push(connection);
    }
    let ready = format!("syncway_queue_depth{{queue=\"{queue}\",state=\"ready\"}}");
    app.api.wait_for_metric(&ready, 3.0).await;
    app.api
        .wait_for_metric("syncway_jobs{status=\"pending\"}", 3.0)
        .await;
    app.api.wait_for_metric("syncway_outbox_pending", 0.0).await;
    assert!(
        app.api
            .metric("syncway_oldest_pending_job_age_seconds")
            .await
            > 0.0
    );
    let body = admin_queue(&app).await;
    assert_eq!(body["manual"]["ready"], 3, "{body}");
    assert_eq!(body["queue"]["ready"], 0, "{body}");
    assert_eq!(body["jobs"]["pending"], 3, "{body}");
    assert!(
        body["oldest_pending_age_seconds"]
            .as_f64()
            .is_some_and(|age| age > 0.0)
    );

    // A worker takes them (15 s each; the management API samples every 5 s): delivered and not acked is unacked,
    // what KEDA's http mode counts so that scale-down spares running syncs.
    app.add_worker(|settings| settings.worker.heartbeat_seconds = 0.2)
        .await;
    let unacked = format!("syncway_queue_depth{{queue=\"{queue}\",state=\"unacked\"}}");
    app.api.wait_for_metric(&unacked, 3.0).await;
    app.api.wait_for_metric(&ready, 0.0).await;
    app.api
        .wait_for_metric("syncway_jobs{status=\"running\"}", 3.0)
        .await;
    let consumers = format!("syncway_queue_consumers{{queue=\"{queue}\"}}");
    assert_eq!(app.api.metric(&consumers).await, 1.0);
    let body = admin_queue(&app).await;
    assert_eq!(body["manual"]["unacked"], 3, "{body}");
    assert_eq!(body["workers"][0]["jobs_in_flight"], 3, "{body}");
    let organization = body_organization(&app, connections[0]).await;
    let running = format!("syncway_running_jobs{{organization=\"{organization}\"}}");
    assert_eq!(app.api.metric(&running).await, 3.0);
    app.workers[0]
        .wait_for_metric("syncway_jobs_in_flight", 3.0)
        .await;
}

async fn body_organization(app: &TestApp, connection: Uuid) -> String {
    app.connection(connection).await["organization_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn admin_routes_answer_operator_keys_only() {
    let app = app(0).await;
    let other = format!("sw_test_other_{}", Uuid::new_v4().simple());
    syncway_store::api_keys::ensure_organization_with_key(&app.db().await, "other", &other)
        .await
        .expect("a second organization");
    for (method, path) in [
        ("GET", "/admin/queue"),
        ("GET", "/admin/dead-letters"),
        ("POST", "/admin/dead-letters/redrive"),
    ] {
        let (status, body) = app.call_with_key(method, path, None, Some(&other)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body["detail"].is_string(), "{body}");
        let (status, _) = app.call_with_key(method, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn dead_letters_are_listed_with_their_reason_and_redriven_without_loss() {
    let app = app(1).await;
    // A message no worker can run: dead-lettered by the worker.
    publish_raw(&app, b"{\"not\": \"a job\"}").await;
    let listed = eventually("the dead letter listed", DEADLINE, || async {
        let (status, body) = app.call("GET", "/admin/dead-letters?limit=10", None).await;
        (status == StatusCode::OK && body["total"] == 1).then_some(body)
    })
    .await;
    let item = &listed["items"][0];
    assert_eq!(item["body"], "{\"not\": \"a job\"}");
    let reason = item["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("rejected") && reason.contains(".sync_jobs"),
        "{reason}"
    );
    assert!(item["dead_lettered_at"].is_string(), "{item}");
    // Peeking left it there.
    let (_, again) = app.call("GET", "/admin/dead-letters", None).await;
    assert_eq!(again["total"], 1);

    // Redriven, it still cannot run: it comes back, nothing is lost.
    let (status, body) = app.call("POST", "/admin/dead-letters/redrive", None).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"redriven": 1})));
    app.workers[0]
        .wait_for_metric("syncway_worker_dead_lettered_total", 2.0)
        .await;
    eventually("the dead letter back", DEADLINE, || async {
        let (_, body) = app.call("GET", "/admin/dead-letters", None).await;
        (body["total"] == 1).then_some(())
    })
    .await;

    // A job's message dead-lettered while its job waits: redriven, it runs.
    let connection = app.stub_connection(json!({"entity_count": 2}), false).await;
    let job = Uuid::now_v7();
    app.db()
        .await
        .execute(
            "INSERT INTO sync_jobs (id, source_connection_id) VALUES ($1, $2)",
            &[&job, &connection],
        )
        .await
        .expect("a pending job without a message");
    let dead = syncway_queue::Topology::new(&app.env.namespace).dead_exchange();
    publish_to(
        &dead,
        "",
        &syncway_model::JobMessage::new(job, connection).encode(),
    )
    .await;
    let (_, body) = app.call("POST", "/admin/dead-letters/redrive", None).await;
    assert_eq!(body["redriven"], 2, "{body}");
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test]
async fn every_metric_family_passes_promtool() {
    let app = app(1).await;
    // Some of everything: a finished job, a snapshot.
    let connection = app.stub_connection(json!({"entity_count": 3}), false).await;
    app.sync(connection, false).await;
    app.api
        .wait_for_metric("syncway_jobs{status=\"completed\"}", 1.0)
        .await;
    for (process, url) in [
        ("api", &app.api.metrics_url),
        ("worker", &app.workers[0].metrics_url),
    ] {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .expect("scraping")
            .text()
            .await
            .expect("a body");
        // deploy/check.py checks the alert rules' and dashboard's metric
        // names against these.
        if let Some(directory) = std::env::var_os("SYNCWAY_METRICS_SAMPLE_DIR") {
            std::fs::create_dir_all(&directory).expect("the sample directory");
            std::fs::write(
                std::path::Path::new(&directory).join(format!("{process}.txt")),
                &text,
            )
            .expect("writing the metrics sample");
        }
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus package; .ci/run installs it)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("writing the metrics");
        let output = child.wait_with_output().expect("promtool's verdict");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.trim().is_empty(),
            "{process}: {said}"
        );
        // Every family has HELP and TYPE.
        let families: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert!(!families.is_empty());
        for family in families {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{process}: {family}"
            );
        }
    }
}

#[tokio::test]
async fn the_api_binary_refreshes_its_snapshot_on_its_own() {
    // As a process of its own: the refresher's HTTP client must work with
    // only what the binary sets up (a TLS provider, for one).
    let env = TestEnv::new().await;
    let api = ApiProcess::start(
        &env,
        &[("SYNCWAY_METRICS__SNAPSHOT_INTERVAL_MS", "200".to_owned())],
    )
    .await;
    let url = format!("{}/metrics", api.metrics_url);
    let queue = syncway_queue::Topology::new(&env.namespace).jobs_queue();
    let seen = eventually("the snapshot's figures on /metrics", DEADLINE, || async {
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let depth = format!("syncway_queue_depth{{queue=\"{queue}\",state=\"unacked\"}}");
        (text.contains(&depth) && text.contains("syncway_ops_snapshot_age_seconds "))
            .then_some(text)
    })
    .await;
    assert!(
        seen.contains("syncway_jobs{status=\"pending\"} 0"),
        "{seen}"
    );
}
