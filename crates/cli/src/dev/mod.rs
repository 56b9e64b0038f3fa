//! `syncway dev`: a whole local system in one process, for a machine without
//! Docker. Finds Postgres and RabbitMQ where the settings say (by default
//! on 127.0.0.1), starts the locally installed servers when they do not
//! answer (as `scripts/services` does) or says what to install, creates the
//! database, and runs the API and two workers through the same library
//! entry points the binaries use, with one metrics listener for the whole
//! process. Ctrl-C (or SIGTERM) shuts everything down cleanly, and stops
//! the servers `dev` started.

mod database;
mod services;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use syncway_runtime::{Role, Settings, telemetry};
use tokio_util::sync::CancellationToken;

use services::Service;

use crate::EXIT_UNREACHABLE;

/// The key `syncway dev` accepts unless `SYNCWAY_AUTH__BOOTSTRAP_API_KEY`
/// names another: fixed, so that the README's commands work as written.
/// Development only: the API listens on 127.0.0.1 unless told otherwise.
pub const DEV_KEY: &str = "sw_local_development_key_not_for_production";

/// How long the API may take to become ready.
const READY_WAIT: Duration = Duration::from_secs(60);

pub async fn main(config: Option<PathBuf>) -> ExitCode {
    let mut started = Vec::new();
    let ended = dev(config, &mut started).await;
    // Whatever happened, the servers dev started stop with it.
    for service in started.iter().rev() {
        service.stop();
    }
    match ended {
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
    if unset("SYNCWAY_DATABASE__URL")
        && let Some(file) = database::url_file()
        && let Some(url) = database::read_url(&file)?
    {
        eprintln!("using the database URL in {}", file.display());
        settings.database.url = url;
    }
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

async fn dev(config: Option<PathBuf>, started: &mut Vec<services::Started>) -> anyhow::Result<()> {
    let settings = dev_settings(config)?;
    telemetry::init_logging(&settings.log);
    let postgres = services::address(&settings.database.url, 5432)?;
    started.extend(services::ensure(Service::Postgres, postgres).await?);
    let rabbitmq = services::address(&settings.amqp.url, 5672)?;
    started.extend(services::ensure(Service::RabbitMq, rabbitmq).await?);
    database::ensure(&settings.database.url).await?;

    let listener = bind(&settings.api.listen, "API", "SYNCWAY_API__LISTEN").await?;
    let metrics_listener = bind(
        &settings.metrics.listen,
        "metrics",
        "SYNCWAY_METRICS__LISTEN",
    )
    .await?;
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
            banner(&url, &metrics_url, &key, started);
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

/// Binds `address`, saying which setting moves it when it is taken.
async fn bind(address: &str, what: &str, setting: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!(
                "binding the {what} listener {address} (if another program listens there, \
             set {setting}=127.0.0.1:PORT)"
            )
        })
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
        if started.elapsed() > READY_WAIT {
            bail!("the API did not become ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The directory of this program, for the banner's `PATH` line: the
/// commands it shows then work as written in a new terminal.
fn program_dir() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.display().to_string()))
        .unwrap_or_else(|| "target/release".to_owned())
}

fn banner(url: &str, metrics_url: &str, key: &str, started: &[services::Started]) {
    let dir = program_dir();
    let stops = match started {
        [] => "Ctrl-C stops syncway dev (PostgreSQL and RabbitMQ were running before it and stay running)."
            .to_owned(),
        started => format!(
            "Ctrl-C stops syncway dev and the {} it started.",
            started
                .iter()
                .map(services::Started::name)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    println!(
        "\nsyncway dev is running: the API and two workers.\n\
         \n  API      {url}   (OpenAPI: {url}/openapi.json)\n  metrics  {metrics_url}\n  API key  {key}\n\
         \nIn another terminal:\n\
         \n  export PATH=\"{dir}:$PATH\"\
         \n  export SYNCWAY_URL={url} SYNCWAY_API_KEY={key}\
         \n  syncway collections create Demo --readable-id demo\
         \n  CONN=$(syncway connections create --collection demo --short-name stub --config '{{\"entity_count\": 1000}}' --continuous -q)\
         \n  syncway run \"$CONN\" --watch\n\
         \n{stops}\n"
    );
}
