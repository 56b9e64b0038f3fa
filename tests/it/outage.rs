//! Outages of RabbitMQ and Postgres, simulated per test with a TCP proxy
//! that the test cuts and restores: triggers are accepted while the broker
//! is unreachable and run once it is back; the API answers 503 while
//! Postgres is unreachable, and running jobs wait the outage out.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;

use crate::harness::{DEADLINE, TcpProxy, TestApp, TestEnv, counts, env, eventually};

#[tokio::test]
async fn a_trigger_accepted_while_the_broker_is_unreachable_runs_once_it_is_back() {
    let env = TestEnv::new().await;
    // The API's relay points at a port where nothing listens.
    let address = TcpProxy::free_address().await;
    let mut app = TestApp::with_api(env, |settings| {
        settings.amqp.url = format!("amqp://guest:guest@{address}/%2f");
    })
    .await;
    app.add_worker(|_| {}).await;
    let connection = app.stub_connection(json!({"entity_count": 7}), false).await;
    let job = app.run(connection, false).await;

    // Nothing can be published: the job waits in the outbox.
    let (status, ready) = app.call_with_key("GET", "/readyz", None, None).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let outbox: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM outbox WHERE job_id = $1", &[&job])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1);
    assert_eq!(outbox, 1);
    assert_eq!(app.job(connection, job).await["status"], "pending");

    // The broker becomes reachable there.
    let broker = "127.0.0.1:5672".parse().unwrap();
    let proxy = TcpProxy::start(address, broker).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["entities_inserted"], 7);
    let outbox: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM outbox", &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1);
    assert_eq!(outbox, 0);
    drop(app);
    proxy.stop();
}

#[tokio::test]
async fn the_api_answers_503_with_retry_after_while_postgres_is_unreachable() {
    let env = TestEnv::new().await;
    let nowhere = TcpProxy::free_address().await;
    let mut settings = env.settings();
    settings.database.url = format!("postgres://postgres@{nowhere}/syncway");
    let (_api, url) = crate::harness::start_api(settings).await;
    let http = reqwest::Client::new();
    for path in ["/source-connections", "/readyz"] {
        let response = http
            .get(format!("{url}{path}"))
            .header("x-api-key", "sw_any_key")
            .send()
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(
            response.status(),
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u32>().ok());
        assert!(retry_after.is_some_and(|seconds| seconds > 0), "{path}");
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(body["detail"].is_string(), "{path}: {body}");
    }
    // Without a key it is still 401: auth needs no database to say so.
    let response = http.get(format!("{url}/source-connections")).send().await;
    assert_eq!(
        response.map(|r| r.status()).ok(),
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
}

/// Waits until the API's readiness says `ready` (or not).
async fn wait_ready(app: &TestApp, ready: bool) {
    let expected = if ready {
        reqwest::StatusCode::OK
    } else {
        reqwest::StatusCode::SERVICE_UNAVAILABLE
    };
    eventually("the API's readiness", DEADLINE, || async {
        let (status, _) = app.call_with_key("GET", "/readyz", None, None).await;
        (status == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_broker_outage_mid_stream_loses_no_trigger_and_runs_every_job_once() {
    let env = TestEnv::new().await;
    // The API's relay and the worker reach RabbitMQ through a proxy that
    // this test cuts and restores; other tests are not affected.
    let address = TcpProxy::free_address().await;
    let rabbit: SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let proxy = TcpProxy::start(address, rabbit).await;
    let url = format!("amqp://guest:guest@{address}/%2f");
    let mut app = TestApp::with_api(env, |settings| settings.amqp.url = url.clone()).await;
    app.add_worker(|settings| settings.amqp.url = url.clone())
        .await;
    wait_ready(&app, true).await;

    // Half a second of work per job.
    let config = json!({"entity_count": 250, "delay_ms_per_entity": 2});
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let connection = app.stub_connection(config.clone(), false).await;
        jobs.push((connection, app.run(connection, false).await));
    }
    // The broker goes away with jobs running, queued and being published.
    proxy.stop();
    wait_ready(&app, false).await;
    for _ in 0..6 {
        let connection = app.stub_connection(config.clone(), false).await;
        jobs.push((connection, app.run(connection, false).await));
    }
    let proxy = TcpProxy::start(address, rabbit).await;
    let restored = Instant::now();

    for (connection, job) in &jobs {
        let done = app.finished_job(*connection, *job).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(counts(&done), [250, 0, 0, 0], "{done}");
        assert_eq!(
            app.connection(*connection).await["entities"]["total_entities"],
            250
        );
    }
    eprintln!(
        "broker outage: all {} jobs completed {:?} after the broker came back",
        jobs.len(),
        restored.elapsed()
    );
    drop(app);
    proxy.stop();
}

#[tokio::test]
async fn a_postgres_outage_answers_503_then_recovers_with_no_job_lost() {
    let env = TestEnv::new().await;
    let address = TcpProxy::free_address().await;
    let proxy = TcpProxy::start(address, env::postgres_address()).await;
    let url = env::postgres_url_via(address, &env.database);
    let mut app = TestApp::with_api(env, |settings| settings.database.url = url.clone()).await;
    app.add_worker(|settings| settings.database.url = url.clone())
        .await;
    // Two seconds of work.
    let connection = app
        .stub_connection(
            json!({"entity_count": 1000, "delay_ms_per_entity": 2}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;

    // Postgres goes away mid-sync: the API says 503 with Retry-After.
    proxy.stop();
    let response = eventually("a 503 from the API", DEADLINE, || async {
        let response = app
            .http
            .get(format!("{}/source-connections", app.url))
            .header("x-api-key", &app.key)
            .send()
            .await
            .ok()?;
        (response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    assert!(response.headers().contains_key("retry-after"));

    let proxy = TcpProxy::start(address, env::postgres_address()).await;
    let restored = Instant::now();
    // The worker waited the outage out: the job completes, once, exactly.
    let done = app.finished_job(connection, job).await;
    let recovery = restored.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [1000, 0, 0, 0], "{done}");
    assert_eq!(app.attempt(job).await, 1);
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        1000
    );
    // And the API takes new work again.
    let next = app.stub_connection(json!({"entity_count": 5}), false).await;
    let next_job = app.run(next, false).await;
    assert_eq!(
        app.finished_job(next, next_job).await["status"],
        "completed"
    );
    eprintln!("postgres outage: the running job completed {recovery:?} after Postgres came back");
    drop(app);
    proxy.stop();
}

#[tokio::test]
async fn a_list_of_brokers_is_tried_in_turn_until_one_answers() {
    // The first broker of the list is down (nothing listens there): the
    // relay and the worker go on to the next, as they would when a
    // cluster's node is gone.
    let env = TestEnv::new().await;
    let list = format!(
        "amqp://guest:guest@127.0.0.1:1/%2f, {}",
        crate::harness::env::AMQP
    );
    let mut app = TestApp::with_api(env, |settings| settings.amqp.url = list.clone()).await;
    let worker_list = list.clone();
    app.add_worker(move |settings| settings.amqp.url = worker_list)
        .await;
    let connection = app.stub_connection(json!({"entity_count": 3}), false).await;
    let job = app.sync(connection, false).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(counts(&job), [3, 0, 0, 0]);
}

#[tokio::test]
async fn every_queue_a_job_message_waits_in_is_a_replicated_quorum_queue() {
    // A classic queue lives on one node: while that node is down no client
    // can declare the topology, and a cluster stalls (syncway-bench chaos
    // --scenario broker-failover). Only a quorum queue counts deliveries:
    // a message put back and taken again carries `x-delivery-count`.
    use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // Ready: the relay is connected, so it has declared the topology.
    wait_ready(&app, true).await;
    let topology = syncway_queue::Topology::new(&app.env.namespace);
    let mut queues = vec![topology.jobs_queue(), topology.dead_queue()];
    queues.extend((0..10).map(|level| topology.retry_queue(1000 << level)));
    queues.dedup();
    assert_eq!(
        queues.len(),
        12,
        "the jobs queue, the dead letters, ten delay levels"
    );
    let (_amqp, channel) = crate::harness::confirmed_channel().await;
    for queue in queues {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"not a job",
                lapin::BasicProperties::default(),
            )
            .await
            .expect("publishing")
            .await
            .expect("the broker confirms");
        let get = || async {
            let deadline = Instant::now() + DEADLINE;
            loop {
                if let Some(message) = channel
                    .basic_get(queue.as_str().into(), BasicGetOptions::default())
                    .await
                    .expect("basic.get")
                {
                    return message;
                }
                assert!(Instant::now() < deadline, "{queue}: the message never came");
            }
        };
        let first = get().await;
        first
            .delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("putting it back");
        let again = get().await;
        let counted = again
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-delivery-count").cloned());
        assert!(counted.is_some(), "{queue} is not a quorum queue");
        again
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
}

/// A RabbitMQ policy on the test's jobs queue, set and removed through the
/// management API (the plugin `scripts/services` enables; the compose
/// image has it), removed when dropped.
struct NackEveryPublish(String);

const MANAGEMENT: &str = "http://127.0.0.1:15672/api/policies/%2F";

impl NackEveryPublish {
    /// Makes the broker nack every publish to `queue` (no room, and
    /// reject-publish), as a quorum queue does while it elects a leader.
    async fn on(queue: &str) -> Self {
        let name = format!("syncway-test-nack-{queue}");
        let response = reqwest::Client::new()
            .put(format!("{MANAGEMENT}/{name}"))
            .basic_auth("guest", Some("guest"))
            .json(&json!({
                "pattern": format!("^{}$", queue.replace('.', "\\.")),
                "definition": {"max-length": 0, "overflow": "reject-publish"},
                "apply-to": "queues",
            }))
            .send()
            .await
            .expect("the RabbitMQ management API");
        assert!(
            response.status().is_success(),
            "setting the policy: {}",
            response.status()
        );
        NackEveryPublish(name)
    }
}

impl Drop for NackEveryPublish {
    fn drop(&mut self) {
        // Drop cannot wait on this runtime: a thread of its own does.
        let url = format!("{MANAGEMENT}/{}", self.0);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                reqwest::Client::new()
                    .delete(url)
                    .basic_auth("guest", Some("guest"))
                    .send()
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[tokio::test]
async fn a_message_the_broker_nacks_for_a_while_is_held_and_published_later_not_set_aside() {
    use lapin::options::BasicPublishOptions;
    // No worker yet: the queue keeps what it takes, so that it stays over
    // its limit of none.
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    wait_ready(&app, true).await;
    // A job triggered through the API goes to the manual-runs queue.
    let queue = syncway_queue::Topology::new(&app.env.namespace).manual_queue();
    let nacking = NackEveryPublish::on(&queue).await;
    // The policy is in force once a probe publish is nacked (the first
    // probe may still be taken: the limit is checked before it).
    let (_amqp, channel) = crate::harness::confirmed_channel().await;
    eventually("the broker nacking publishes", DEADLINE, || async {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"probe",
                lapin::BasicProperties::default(),
            )
            .await
            .ok()?
            .await
            .ok()?;
        confirm.is_nack().then_some(())
    })
    .await;

    let connection = app.stub_connection(json!({"entity_count": 5}), false).await;
    let job = app.run(connection, false).await;
    // Refused, and held in the outbox rather than set aside.
    eventually("the message held after a nack", DEADLINE, || async {
        let held: bool = app
            .db()
            .await
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE job_id = $1 AND refused_since IS NOT NULL)",
                &[&job],
            )
            .await
            .ok()?
            .get(0);
        held.then_some(())
    })
    .await;
    assert_eq!(app.job(connection, job).await["status"], "pending");

    // The refusal passes: the job runs, once (the worker dead-letters the
    // probe).
    drop(nacking);
    app.add_worker(|_| {}).await;
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [5, 0, 0, 0]);
    assert_eq!(app.attempt(job).await, 1);
}
