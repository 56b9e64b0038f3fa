//! `syncway-worker`: consumes job messages, claims each job in Postgres,
//! runs its connector, commits entities and counts batch by batch, and acks
//! the message only after the job's final state is committed.
//!
//! [`run`] is the whole process minus flag parsing: tests call it with a
//! listener on port 0 and a shutdown future, exactly as `main` does.

mod budget;
mod claims;
mod commits;
mod consume;
mod delivery;
mod heartbeat;
mod memory;
mod metrics;
mod outage;
mod outcome;
mod prefetch;
mod reaper;
mod registry;
mod releases;
mod reseal;
mod retention;
mod retry;
mod run;
mod running;
pub mod scheduler;
mod seen;
mod slots;
mod stored_ids;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use syncway_runtime::{CredentialCipher, Settings, telemetry};
use syncway_store::{Pool, Shape};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use metrics::WorkerMetrics;

/// What every job task shares.
pub(crate) struct Context {
    pub pool: Pool,
    pub cipher: CredentialCipher,
    pub metrics: WorkerMetrics,
    /// This process's lease owner name: unique per process start.
    pub worker_id: String,
    pub lease_seconds: f64,
    /// Cancelled when shutdown begins (stop waiting on retries).
    pub stopping: CancellationToken,
    pub claims: claims::ClaimBatcher,
    pub commits: commits::CommitBatcher,
    pub retry: retry::RetryPolicy,
    /// The jobs running here, by id: where a cancel message is delivered.
    pub running: running::Running,
    /// What connectors may reach (CONTRACT.md §4) and consume.
    pub policy: Arc<syncway_egress::Policy>,
    pub limits: syncway_connectors::Limits,
    /// A job running longer than this since it first started fails.
    pub max_job: Duration,
    /// The fair share and the caps per source type (`limits.*`): a job of
    /// a capped organization or source type that stops running lets one of
    /// its held jobs go.
    pub claim_limits: syncway_store::jobs::ClaimLimits,
    /// The shared source budgets (`limits.source_requests_per_second`).
    pub budgets: Arc<budget::SourceBudgets>,
    /// Tells this process's relay that a message was committed to the
    /// outbox (a retry, a held job let go, a re-enqueue).
    pub relay_wake: Arc<tokio::sync::Notify>,
    /// `sync.mass_delete_min_entities` (the mass-deletion guard's floor).
    pub mass_delete_min_entities: i64,
    /// What the batches of all this process's jobs may hold at once.
    pub memory: Arc<memory::MemoryBudget>,
}

#[derive(Debug, clap::Parser)]
#[command(name = "syncway-worker", version, about = "syncway sync-job worker")]
struct Cli {
    /// TOML configuration file (also SYNCWAY_CONFIG); environment variables
    /// SYNCWAY_<SECTION>__<KEY> override it.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

/// The `syncway-worker` process: parses flags, loads settings, binds the
/// metrics listener, and [`run`]s until SIGTERM or Ctrl-C. (The integration
/// tests build the same process as a binary of their own, to kill it.)
pub async fn main() -> anyhow::Result<()> {
    use clap::Parser as _;
    let cli = Cli::parse();
    let settings = Settings::load(syncway_runtime::Role::Worker, cli.config.as_deref())?;
    telemetry::init_logging(&settings.log);
    let metrics = TcpListener::bind(&settings.metrics.listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", settings.metrics.listen))?;
    memory::warn_of_malloc();
    run(settings, metrics, syncway_runtime::shutdown_signal()).await
}

/// A lease owner name that is unique per process start and says where the
/// worker runs: `<host>-<pid>-<random>`.
fn worker_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}-{}",
        syncway_runtime::hostname(),
        std::process::id(),
        &random[..8]
    )
}

/// A worker's metrics, registered on a registry of the caller's. Workers of
/// one process (`syncway dev`) may share one: their counts add up.
#[derive(Clone)]
pub struct WorkerTelemetry {
    metrics: WorkerMetrics,
    scheduler: scheduler::SchedulerMetrics,
    relay: syncway_relay::RelayMetrics,
}

impl WorkerTelemetry {
    /// Registers the worker's families on `registry` (prefix `syncway`).
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        WorkerTelemetry {
            metrics: WorkerMetrics::new(registry),
            scheduler: scheduler::SchedulerMetrics::new(registry),
            relay: syncway_relay::RelayMetrics::register(
                registry.sub_registry_with_prefix("worker"),
            ),
        }
    }
}

/// Runs the worker process until `shutdown` resolves, then stops consuming
/// and gives running jobs `worker.shutdown_grace_seconds` to finish.
/// `/metrics`, `/healthz` and `/readyz` are served on `metrics_listener`.
pub async fn run(
    settings: Settings,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("syncway");
    let telemetry = WorkerTelemetry::register(&mut registry);
    run_with(
        settings,
        telemetry,
        Some((metrics_listener, Arc::new(registry))),
        shutdown,
    )
    .await
}

/// [`run`], with metrics registered by the caller; with `serve`, it serves
/// them (and its health probes) itself.
pub async fn run_with(
    settings: Settings,
    telemetry: WorkerTelemetry,
    serve: Option<(TcpListener, Arc<prometheus_client::registry::Registry>)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Jobs hold a connection only while they write, so `concurrency` jobs
    // share `pool_size` connections: fewer busy Postgres backends do more.
    let worker_id = worker_id();
    let pool = syncway_store::open(
        &syncway_store::PoolSettings::new(&settings.database.url, settings.database.pool_size)
            .bounded(settings.worker.session_bound())
            .named(&worker_id),
        settings.database.migrate,
    )
    .await
    .context("opening the database (migrations)")?;
    let cipher = CredentialCipher::from_settings(&settings.security)?;
    let policy = Arc::new(syncway_runtime::egress::policy(&settings).await?);
    let connectors = &settings.connectors;
    let limits = syncway_connectors::Limits {
        max_entity_bytes: connectors.max_entity_bytes,
        max_batch_bytes: connectors.max_batch_bytes,
        max_response_bytes: connectors.max_response_bytes,
        max_pages: connectors.max_pages,
        postgres_connect_timeout: Duration::from_secs(connectors.postgres_connect_timeout_seconds),
        postgres_statement_timeout: Duration::from_secs(
            connectors.postgres_statement_timeout_seconds,
        ),
        postgres_keepalive: Duration::from_secs(connectors.postgres_keepalive_seconds),
    };
    let WorkerTelemetry {
        metrics,
        scheduler: scheduler_metrics,
        relay: relay_metrics,
    } = telemetry;
    let memory_bytes = settings
        .worker
        .memory_budget_bytes
        .unwrap_or_else(memory::default_budget);
    metrics
        .memory_budget
        .set(i64::try_from(memory_bytes).unwrap_or(i64::MAX));
    let memory = Arc::new(memory::MemoryBudget::new(
        memory_bytes,
        metrics.memory_reserved.clone(),
        metrics.memory_waits.clone(),
    ));
    let batch_read = memory::READ_FACTOR * connectors.max_batch_bytes;
    if batch_read > memory_bytes / u64::from(settings.worker.concurrency.max(1)) {
        tracing::warn!(
            memory_budget_bytes = memory_bytes,
            concurrency = settings.worker.concurrency,
            batch_read_bytes = batch_read,
            "the memory budget holds fewer batch reads than jobs run at once; jobs will wait \
             for each other (raise SYNCWAY_WORKER__MEMORY_BUDGET_BYTES or lower \
             SYNCWAY_CONNECTORS__MAX_BATCH_BYTES)"
        );
    }
    let stopping = CancellationToken::new();
    // A heartbeat of the session bound: a connection cut off is found and
    // closed by both ends within a few seconds (see `with_heartbeat`).
    let amqp_url =
        syncway_queue::with_heartbeat(&settings.amqp.url, settings.worker.heartbeat_seconds());
    let lease_seconds = settings.worker.lease_seconds as f64;
    let claims = claims::spawn(
        pool.clone(),
        worker_id.clone(),
        lease_seconds,
        job_batches(settings.worker.concurrency),
        claim_limits(&settings),
    );
    let commits = commits::spawn(
        pool.clone(),
        lease_seconds,
        job_batches(settings.worker.concurrency),
    );
    let context = Arc::new(Context {
        pool: pool.clone(),
        cipher,
        metrics,
        worker_id,
        lease_seconds,
        stopping: stopping.clone(),
        claims,
        commits,
        retry: retry::RetryPolicy {
            max_attempts: i32::try_from(settings.retry.max_attempts).unwrap_or(i32::MAX),
            base_delay: Duration::from_millis(settings.retry.base_delay_ms),
            max_delay: Duration::from_millis(settings.retry.max_delay_ms),
        },
        running: running::Running::default(),
        policy,
        limits,
        max_job: Duration::from_secs(settings.worker.max_job_seconds),
        claim_limits: claim_limits(&settings),
        budgets: Arc::new(budget::SourceBudgets::new(
            &settings.limits.source_requests_per_second,
        )),
        relay_wake: Arc::new(tokio::sync::Notify::new()),
        mass_delete_min_entities: settings.sync.mass_delete_min_entities,
        memory,
    });
    tracing::info!(worker_id = %context.worker_id, concurrency = settings.worker.concurrency, "worker starting");

    let ready = Arc::new(AtomicBool::new(false));
    let server_stop = CancellationToken::new();
    let server = serve.map(|(listener, registry)| {
        let health = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readiness))
            .with_state((pool, ready.clone()))
            .merge(telemetry::metrics_router(registry));
        tokio::spawn(telemetry::serve(
            listener,
            health,
            server_stop.clone().cancelled_owned(),
        ))
    });

    tokio::spawn({
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
        }
    });
    // Workers relay the outbox too: retries, held jobs let go, re-enqueues
    // and scheduled runs reach the broker with no API process running.
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(
        syncway_relay::Relay {
            pool: context.pool.clone(),
            amqp_url: amqp_url.clone(),
            namespace: settings.amqp.namespace.clone(),
            wake: context.relay_wake.clone(),
            ready: Arc::new(AtomicBool::new(false)),
            metrics: relay_metrics,
            name: format!("{}-relay", context.worker_id),
        }
        .run(relay_stop.clone()),
    );
    let scheduler = settings.scheduler.enabled.then(|| {
        tokio::spawn(
            scheduler::Scheduler::new(
                context.pool.clone(),
                Arc::new(scheduler::SystemClock),
                scheduler::Options {
                    max_jitter: Duration::from_secs(settings.scheduler.jitter_seconds),
                    interval: Duration::from_millis(settings.scheduler.interval_ms),
                    batch: 500,
                },
                scheduler_metrics,
            )
            .run(stopping.clone()),
        )
    });
    // The row stays fresh until the running jobs are done.
    let registry_stop = CancellationToken::new();
    let registry = tokio::spawn(registry::run(
        context.clone(),
        registry::Registration {
            row: syncway_store::ops::WorkerRow {
                id: context.worker_id.clone(),
                hostname: syncway_runtime::hostname(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: chrono::Utc::now(),
                last_seen: chrono::Utc::now(),
                concurrency: i32::from(settings.worker.concurrency),
                jobs_in_flight: 0,
                alive: true,
            },
            heartbeat: Duration::from_secs_f64(settings.worker.heartbeat_seconds),
        },
        registry_stop.clone(),
    ));
    let reaper = tokio::spawn(reaper::run(
        context.clone(),
        reaper::Options {
            interval: Duration::from_secs(settings.worker.reap_interval_seconds),
            requeue_after: Duration::from_secs(settings.worker.requeue_after_seconds),
            amqp_url: amqp_url.clone(),
            namespace: settings.amqp.namespace.clone(),
            limits: claim_limits(&settings),
            bound: settings.worker.session_bound(),
        },
    ));
    let webhooks = settings.webhooks.enabled.then(|| {
        tokio::spawn(webhooks::run(
            context.clone(),
            webhooks::Options {
                timeout: Duration::from_secs(settings.webhooks.timeout_seconds),
                disable_after_hours: settings.webhooks.disable_after_hours,
                concurrency: settings.webhooks.concurrency,
                per_endpoint: settings.webhooks.per_endpoint,
            },
        ))
    });
    let retention = settings.retention.enabled.then(|| {
        tokio::spawn(retention::run(
            context.clone(),
            retention::Options {
                rules: syncway_store::retention::Rules {
                    job_days: settings.retention.job_days,
                    keep_per_connection: settings.retention.keep_per_connection,
                    audit_days: settings.retention.audit_days,
                    webhook_days: settings.retention.webhook_days,
                    batch: retention::BATCH,
                },
                interval: Duration::from_secs(settings.retention.interval_seconds.max(1)),
            },
        ))
    });
    consume::run(
        context.clone(),
        consume::Options {
            amqp_url: amqp_url.clone(),
            namespace: settings.amqp.namespace.clone(),
            concurrency: settings.worker.concurrency,
            grace: Duration::from_secs(settings.worker.shutdown_grace_seconds),
        },
        ready,
    )
    .await;
    // They stop at `stopping`, after the pass in flight.
    let _ = reaper.await;
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    if let Some(webhooks) = webhooks {
        let _ = webhooks.await;
    }
    registry_stop.cancel();
    let _ = registry.await;
    registry::deregister(&context).await;
    if let Some(scheduler) = scheduler {
        // It stops at `stopping`; a pass in flight commits or rolls back.
        let _ = scheduler.await;
    }
    // Last: it publishes what the jobs, the reaper and the scheduler
    // committed before they stopped.
    relay_stop.cancel();
    let _ = relay.await;
    server_stop.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    Ok(())
}

/// How claims and commits are batched, each into one statement for many
/// jobs: one lane, as many items as the worker runs jobs, and a 1 ms linger
/// under load (see [`Shape::linger`]; an idle worker never waits). A
/// statement's fixed cost (planning, executor start, its CTEs) was most of
/// what it cost, and a second lane, which took the one or two items queued
/// behind the first, halved the batches. One lane and the linger took them
/// from about 3 jobs to about 12: Postgres CPU per job 0.57-0.67 ms against
/// 1.06-1.20 (README, Performance, issue 30).
fn job_batches(concurrency: u16) -> Shape {
    Shape {
        lanes: 1,
        max_batch: usize::from(concurrency),
        linger: Duration::from_millis(1),
    }
}

/// The fair share (running jobs one organization may hold, if capped) and
/// the caps per source type.
fn claim_limits(settings: &Settings) -> syncway_store::jobs::ClaimLimits {
    let cap = |limit: u32| i32::try_from(limit).unwrap_or(i32::MAX);
    syncway_store::jobs::ClaimLimits {
        max_per_org: settings.limits.max_running_jobs_per_org.map(cap),
        source_type_caps: settings
            .limits
            .max_running_jobs_per_source_type
            .iter()
            .map(|(name, limit)| (name.clone(), cap(*limit)))
            .collect(),
    }
}

/// 200 when Postgres answers and the consumer is attached to the broker.
async fn readiness(State((pool, ready)): State<(Pool, Arc<AtomicBool>)>) -> (StatusCode, String) {
    let postgres = syncway_store::ping(&pool).await;
    let broker = ready.load(Ordering::Relaxed);
    let status = if postgres && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("postgres: {postgres}, broker: {broker}\n"))
}
