//! Connection pool and migrations.

use std::time::Duration;

use deadpool_postgres::{CreatePoolError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::StoreError;

refinery::embed_migrations!("../../migrations");

/// Key of the session advisory lock that serializes migrations across every
/// API and worker process starting at once.
const MIGRATION_LOCK: i64 = 0x5359_4e43_5741_5901;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub url: String,
    pub max_size: usize,
    /// How long a caller waits for a connection before the pool gives up.
    pub wait_timeout: Duration,
}

/// Every session plans each statement for its actual parameters (a custom
/// plan) rather than caching a generic plan. The batched statements
/// (`trigger_many`, `claim_many`, `commit_many`) take arrays of 1 to
/// thousands of items, and a generic plan cached while a table was still
/// small keeps sequential scans long after it has grown (measured: the
/// commit statement reading every stored entity, throughput down by half
/// after 20,000 jobs on a fresh database). Planning per execution costs less
/// than that, and the batches share it.
const SESSION_OPTIONS: &str = "-c plan_cache_mode=force_custom_plan";

/// Creates the pool. No connection is made until one is needed, so this
/// succeeds while Postgres is down; callers see errors per request instead.
pub fn connect(settings: &PoolSettings) -> Result<Pool, StoreError> {
    let mut config: tokio_postgres::Config = settings.url.parse()?;
    // Keep whatever options the URL carries.
    let options = match config.get_options() {
        Some(options) if !options.trim().is_empty() => format!("{options} {SESSION_OPTIONS}"),
        _ => SESSION_OPTIONS.to_owned(),
    };
    config.options(&options);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.wait_timeout))
        .recycle_timeout(Some(settings.wait_timeout))
        .build()
        .map_err(|error| StoreError::CreatePool(CreatePoolError::Build(error)))
}

/// What both binaries do at start-up: apply the migrations (when `migrate`)
/// and create a pool of `max_size` connections (waiting up to 5 s for one).
pub async fn open(url: &str, max_size: usize, migrate: bool) -> Result<Pool, StoreError> {
    if migrate {
        self::migrate(url).await?;
    }
    connect(&PoolSettings {
        url: url.to_owned(),
        max_size,
        wait_timeout: Duration::from_secs(5),
    })
}

/// Applies pending migrations under a Postgres advisory lock, so that any
/// number of processes may start at once. Returns the versions applied.
pub async fn migrate(url: &str) -> Result<Vec<i32>, StoreError> {
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection ended with an error");
        }
    });
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = migrations::runner().run_async(&mut client).await;
    // The lock is released with the session in any case; unlock explicitly so
    // a pooled proxy connection would not keep it.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = driver.await;
    let applied = report?
        .applied_migrations()
        .iter()
        .map(|migration| migration.version())
        .collect();
    Ok(applied)
}
