//! The test harness: an isolated environment per test, the API and workers
//! started through their library entry points, an HTTP client, and waiting
//! on conditions with deadlines.

pub mod browser;
mod database;
pub mod env;
pub mod mysql;
pub mod openapi;
pub mod partition;
pub mod pg_cluster;
mod process;
mod proxy;
pub mod s3;
mod takeover;

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use syncway_runtime::Settings;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use env::TestEnv;
pub use process::{ApiProcess, WorkerProcess, api_command, api_command_with, free_port};
pub use proxy::TcpProxy;
pub use takeover::sync_killed_mid_way;

/// How long any wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running process entry point (API or worker) that stops on drop.
pub struct Running {
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub metrics_url: String,
}

impl Running {
    /// Asks it to stop (as SIGTERM does) and waits until it has.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// Stops it (as SIGTERM does) and waits until it has, leaving it in
    /// place: what it served is gone.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the metric `name` reaches `value`.
    pub async fn wait_for_metric(&self, name: &str, value: f64) {
        eventually(&format!("{name} = {value}"), DEADLINE, || async {
            (self.metric(name).await == value).then_some(())
        })
        .await;
    }

    /// Reads one metric's value from its Prometheus endpoint (0 if absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let Ok(response) = reqwest::get(format!("{}/metrics", self.metrics_url)).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(' '))
            .filter(|(series, _)| *series == name)
            .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A listener on a free local port, and its `http://` URL.
pub async fn local_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a local port");
    let address = listener.local_addr().expect("local address");
    (listener, format!("http://{address}"))
}

/// Runs an entry point as a task, stoppable like a process, and waits until
/// `ready_url` answers 200.
async fn start<F>(
    what: &str,
    metrics_url: String,
    ready_url: String,
    entry: impl FnOnce(tokio_util::sync::WaitForCancellationFutureOwned) -> F,
) -> Running
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(entry(stop.clone().cancelled_owned()));
    let client = reqwest::Client::new();
    eventually(&format!("{what} to be ready"), DEADLINE, || async {
        let response = client.get(&ready_url).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    Running {
        stop,
        task: Some(task),
        metrics_url,
    }
}

/// Starts the API entry point with `settings`; returns it and its URL.
pub async fn start_api(settings: Settings) -> (Running, String) {
    let (listener, url) = local_listener().await;
    let (metrics, metrics_url) = local_listener().await;
    let running = start("the API", metrics_url, format!("{url}/healthz"), |stop| {
        syncway_api::run(settings, listener, metrics, stop)
    })
    .await;
    (running, url)
}

/// Starts a worker entry point with `settings`.
pub async fn start_worker(settings: Settings) -> Running {
    let (metrics, metrics_url) = local_listener().await;
    let ready = format!("{metrics_url}/readyz");
    start("the worker", metrics_url, ready, |stop| {
        syncway_worker::run(settings, metrics, stop)
    })
    .await
}

/// An environment with the API (and optionally workers) running, and a
/// client holding the bootstrap key.
pub struct TestApp {
    /// Kept alive for the test; dropping it stops the API.
    pub api: Running,
    pub workers: Vec<Running>,
    pub url: String,
    pub key: String,
    pub http: reqwest::Client,
    /// Dropped last: removes the database and the AMQP namespace.
    pub env: TestEnv,
}

impl TestApp {
    /// The API and one worker.
    pub async fn spawn() -> Self {
        Self::spawn_with(1).await
    }

    /// The API and `workers` workers.
    pub async fn spawn_with(workers: usize) -> Self {
        Self::spawn_on(TestEnv::new().await, workers).await
    }

    /// The API and `workers` workers on `env` (with its connector policy).
    pub async fn spawn_on(env: TestEnv, workers: usize) -> Self {
        let mut app = Self::with_api(env, |_| {}).await;
        for _ in 0..workers {
            app.add_worker(|_| {}).await;
        }
        app
    }

    /// Starts the API on `env`, letting `tweak` adjust its settings.
    pub async fn with_api(env: TestEnv, tweak: impl FnOnce(&mut Settings)) -> Self {
        let key = format!("sw_test_{}", Uuid::new_v4().simple());
        let mut settings = env.settings();
        settings.auth.bootstrap_api_key = Some(key.clone().into());
        tweak(&mut settings);
        let (api, url) = start_api(settings).await;
        TestApp {
            api,
            workers: Vec::new(),
            url,
            key,
            http: reqwest::Client::new(),
            env,
        }
    }

    pub async fn add_worker(&mut self, tweak: impl FnOnce(&mut Settings)) {
        let mut settings = self.env.settings();
        tweak(&mut settings);
        self.workers.push(start_worker(settings).await);
    }

    /// Sends a request with the app's key; returns status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with_key(method, path, body, Some(&self.key))
            .await
    }

    pub async fn call_with_key(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let name = method;
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("request to {path} failed: {error}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        openapi::check(name, path, status.as_u16(), &body);
        (status, body)
    }

    /// Sends a raw body (for malformed JSON).
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let name = method;
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let response = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("x-api-key", &self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("request to {path} failed: {error}"));
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        openapi::check(name, path, status.as_u16(), &body);
        (status, body)
    }

    pub async fn create_collection(&self) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/collections",
                Some(json!({"name": "Test collection"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["readable_id"].as_str().unwrap_or_default().to_owned()
    }

    /// Asks for a connection of `short_name` in a new collection; the
    /// answer as it is.
    pub async fn try_connection(
        &self,
        short_name: &str,
        config: Value,
        credentials: impl Into<Option<Value>>,
        continuous: bool,
    ) -> (StatusCode, Value) {
        let collection = self.create_collection().await;
        let mut body = json!({
            "short_name": short_name,
            "readable_collection_id": collection,
            "config": config,
            "schedule": {"continuous": continuous},
        });
        if let Some(credentials) = credentials.into() {
            body["authentication"] = json!({ "credentials": credentials });
        }
        self.call("POST", "/source-connections", Some(body)).await
    }

    /// Creates a connection of `short_name` in a new collection.
    pub async fn connection_of(
        &self,
        short_name: &str,
        config: Value,
        credentials: impl Into<Option<Value>>,
        continuous: bool,
    ) -> Uuid {
        let (status, body) = self
            .try_connection(short_name, config, credentials, continuous)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id_of(&body)
    }

    /// Creates a stub connection in a new collection.
    pub async fn stub_connection(&self, config: Value, continuous: bool) -> Uuid {
        self.connection_of("stub", config, None, continuous).await
    }

    /// Runs a job to its end and returns it.
    pub async fn sync(&self, connection: Uuid, force_full_sync: bool) -> Value {
        let job = self.run(connection, force_full_sync).await;
        self.finished_job(connection, job).await
    }

    /// Waits until the job runs and has committed some entities.
    pub async fn running_with_data(&self, connection: Uuid, job: Uuid) -> Value {
        self.job_where(connection, job, "running with data", |job| {
            job["status"] == "running" && job["entities_inserted"].as_i64().is_some_and(|n| n > 0)
        })
        .await
    }

    /// Stops the first worker as SIGTERM does (its grace period as its
    /// settings say) and returns the job as the stop left it.
    pub async fn stop_first_worker(&mut self, connection: Uuid, job: Uuid) -> Value {
        let worker = self.workers.remove(0);
        worker.shutdown().await.unwrap();
        self.job(connection, job).await
    }

    /// Asks to cancel the job; the answer as it is.
    pub async fn cancel(&self, connection: Uuid, job: Uuid) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/source-connections/{connection}/jobs/{job}/cancel"),
            None,
        )
        .await
    }

    /// Triggers a run and asserts it was accepted; returns the job id.
    pub async fn run(&self, connection: Uuid, force_full_sync: bool) -> Uuid {
        let (status, body) = self
            .call(
                "POST",
                &format!("/source-connections/{connection}/run?force_full_sync={force_full_sync}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id_of(&body)
    }

    /// The connection's jobs, newest first (answered 200).
    pub async fn jobs(&self, connection: Uuid) -> Value {
        let (status, body) = self
            .call(
                "GET",
                &format!("/source-connections/{connection}/jobs"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn job(&self, connection: Uuid, job: Uuid) -> Value {
        let (status, body) = self
            .call(
                "GET",
                &format!("/source-connections/{connection}/jobs/{job}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits until the job is terminal and returns it.
    pub async fn finished_job(&self, connection: Uuid, job: Uuid) -> Value {
        self.job_where(connection, job, "a terminal status", |job| {
            matches!(
                job["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        })
        .await
    }

    /// Waits until `predicate` holds for the job and returns it.
    pub async fn job_where(
        &self,
        connection: Uuid,
        job: Uuid,
        what: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(&format!("job {job} to reach {what}"), DEADLINE, || async {
            let body = self.job(connection, job).await;
            predicate(&body).then_some(body)
        })
        .await
    }

    pub async fn connection(&self, connection: Uuid) -> Value {
        let (status, body) = self
            .call("GET", &format!("/source-connections/{connection}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn db(&self) -> deadpool_postgres::Object {
        self.env.db().await
    }
}

/// A channel in confirm mode on a connection of its own to the test
/// broker (keep the connection alive as long as the channel is used).
pub async fn confirmed_channel() -> (lapin::Connection, lapin::Channel) {
    let amqp = lapin::Connection::connect(env::AMQP, lapin::ConnectionProperties::default())
        .await
        .expect("connecting to RabbitMQ");
    let channel = amqp.create_channel().await.expect("a channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    (amqp, channel)
}

/// A job's inserted, updated, deleted and failed counts.
pub fn counts(job: &Value) -> [i64; 4] {
    ["inserted", "updated", "deleted", "failed"]
        .map(|kind| job[format!("entities_{kind}")].as_i64().unwrap_or(-1))
}

pub fn id_of(body: &Value) -> Uuid {
    body["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .unwrap_or_else(|| panic!("no id in {body}"))
}
