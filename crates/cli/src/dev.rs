//! `syncway dev`: a whole local system in one process, for a machine without
//! Docker. Finds Postgres and RabbitMQ where the settings say (by default
//! on 127.0.0.1), starts the locally installed servers when they do not
//! answer (as `scripts/services` does) or says what to install, creates the
//! database, and runs the API and two workers through the same library
//! entry points the binaries use, with one metrics listener for the whole
//! process. Ctrl-C (or SIGTERM) shuts everything down cleanly.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use syncway_runtime::{Role, Settings, telemetry};
use tokio_util::sync::CancellationToken;

use crate::EXIT_UNREACHABLE;

/// The key `syncway dev` accepts unless `SYNCWAY_AUTH__BOOTSTRAP_API_KEY`
/// names another: fixed, so that the README's commands work as written.
/// Development only: the API listens on 127.0.0.1 unless told otherwise.
pub const DEV_KEY: &str = "sw_local_development_key_not_for_production";

/// How long a server that was just started may take to answer.
const START_WAIT: Duration = Duration::from_secs(60);

pub async fn main(config: Option<PathBuf>) -> ExitCode {
    match dev(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("syncway dev: {error:#}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// The settings with dev's defaults where the user set nothing.
fn dev_settings(config: Option<PathBuf>) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(Role::Api, config.as_deref())?;
    let unset = |name: &str| std::env::var_os(name).is_none() && config.is_none();
    if unset("SYNCWAY_API__LISTEN") {
        settings.api.listen = "127.0.0.1:8080".into();
    }
    if unset("SYNCWAY_METRICS__LISTEN") {
        settings.metrics.listen = "127.0.0.1:9090".into();
    }
    if settings.auth.bootstrap_api_key.is_none() {
        settings.auth.bootstrap_api_key = Some(DEV_KEY.to_owned().into());
    }
    if settings.security.encryption_key.is_none() {
        settings.security.allow_development_key = true;
    }
    Ok(settings)
}

/// `host:port` of a URL, with the scheme's default port.
fn address(url: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let first = url.split(',').next().unwrap_or(url).trim();
    let parsed = url::Url::parse(first).with_context(|| "reading a service URL".to_owned())?;
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    Ok((host, parsed.port().unwrap_or(default_port)))
}

async fn answers(host: &str, port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts the local PostgreSQL cluster (Debian's `pg_ctlcluster`).
fn start_postgres() -> anyhow::Result<()> {
    if !installed("pg_ctlcluster") {
        bail!(
            "PostgreSQL does not answer and is not installed here: install it \
             (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) \
             or point SYNCWAY_DATABASE__URL at a running server"
        );
    }
    let clusters = Command::new("pg_lsclusters").arg("-h").output()?;
    let listing = String::from_utf8_lossy(&clusters.stdout);
    let Some(version) = listing.split_whitespace().next() else {
        bail!("PostgreSQL is installed but has no cluster: run pg_createcluster first");
    };
    eprintln!("starting the local PostgreSQL {version}");
    let _ = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", "start"])
        .status();
    Ok(())
}

/// Starts the local RabbitMQ (detached).
fn start_rabbitmq() -> anyhow::Result<()> {
    if !installed("rabbitmq-server") {
        bail!(
            "RabbitMQ does not answer and is not installed here: install it \
             (Debian/Ubuntu: apt-get install rabbitmq-server; macOS: brew install rabbitmq) \
             or point SYNCWAY_AMQP__URL at a running broker"
        );
    }
    eprintln!("starting the local RabbitMQ");
    let _ = Command::new("rabbitmq-server").arg("-detached").status();
    Ok(())
}

/// Makes sure a service answers, starting it when it does not.
async fn ensure(
    what: &str,
    (host, port): (String, u16),
    start: fn() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if answers(&host, port).await {
        return Ok(());
    }
    let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if !local {
        bail!("{what} does not answer on {host}:{port}");
    }
    start()?;
    let started = Instant::now();
    while !answers(&host, port).await {
        if started.elapsed() > START_WAIT {
            bail!("{what} was started but does not answer on {host}:{port} after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Creates the database of `url` when it is missing.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let mut admin = url::Url::parse(url).context("reading SYNCWAY_DATABASE__URL")?;
    let name = admin.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        bail!("SYNCWAY_DATABASE__URL names no database");
    }
    admin.set_path("/postgres");
    let (client, connection) = tokio_postgres::connect(admin.as_str(), tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL (database postgres)")?;
    let connection = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
            .with_context(|| format!("creating the database {name}"))?;
        eprintln!("created the database {name}");
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

async fn dev(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = dev_settings(config)?;
    telemetry::init_logging(&settings.log);
    ensure(
        "PostgreSQL",
        address(&settings.database.url, 5432)?,
        start_postgres,
    )
    .await?;
    ensure(
        "RabbitMQ",
        address(&settings.amqp.url, 5672)?,
        start_rabbitmq,
    )
    .await?;
    ensure_database(&settings.database.url).await?;

    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("binding the API listener {}", settings.api.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(&settings.metrics.listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", settings.metrics.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let metrics_url = format!("http://{}/metrics", metrics_listener.local_addr()?);

    // One registry for the whole process: the API's families and the
    // workers' (which both workers share, so their counts add up).
    let mut registry = prometheus_client::registry::Registry::with_prefix("syncway");
    let api_telemetry = syncway_api::ApiTelemetry::register(&mut registry);
    let worker_telemetry = syncway_worker::WorkerTelemetry::register(&mut registry);
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let served = telemetry::serve(
        metrics_listener,
        telemetry::metrics_router(Arc::new(registry)),
        stop.clone().cancelled_owned(),
    );
    tasks.spawn(async move { served.await.context("serving metrics") });
    tasks.spawn(syncway_api::run_with(
        settings.clone(),
        listener,
        api_telemetry,
        None,
        stop.clone().cancelled_owned(),
    ));
    for _ in 0..2 {
        tasks.spawn(syncway_worker::run_with(
            settings.clone(),
            worker_telemetry.clone(),
            None,
            stop.clone().cancelled_owned(),
        ));
    }
    let key = settings
        .auth
        .bootstrap_api_key
        .as_ref()
        .map(|key| key.expose_secret().to_owned())
        .unwrap_or_default();
    tokio::select! {
        ready = wait_ready(&url) => {
            ready?;
            banner(&url, &metrics_url, &key);
        }
        Some(ended) = tasks.join_next() => {
            stop.cancel();
            return match ended {
                Ok(Err(error)) => Err(error),
                _ => Err(anyhow::anyhow!("a part of syncway dev stopped during start-up")),
            };
        }
    }
    tokio::select! {
        () = syncway_runtime::shutdown_signal() => eprintln!("shutting down"),
        Some(ended) = tasks.join_next() => {
            if let Ok(Err(error)) = ended {
                eprintln!("syncway dev: {error:#}");
            }
        }
    }
    stop.cancel();
    let mut failed = None;
    while let Some(ended) = tasks.join_next().await {
        if let Ok(Err(error)) = ended {
            failed = Some(error);
        }
    }
    match failed {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{url}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > START_WAIT {
            bail!("the API did not become ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn banner(url: &str, metrics_url: &str, key: &str) {
    println!(
        "\nsyncway dev is running: the API and two workers.\n\
         \n  API      {url}   (OpenAPI: {url}/openapi.json)\n  metrics  {metrics_url}\n  API key  {key}\n\
         \nIn another terminal:\n\
         \n  export SYNCWAY_URL={url} SYNCWAY_API_KEY={key}\
         \n  syncway collections create Demo --readable-id demo\
         \n  syncway connections create --collection demo --short-name stub --config '{{\"entity_count\": 1000}}'\
         \n  syncway run CONNECTION_ID --watch\n\
         \nCtrl-C stops everything.\n"
    );
}
