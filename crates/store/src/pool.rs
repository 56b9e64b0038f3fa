//! Connection pool and migrations.

use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
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

/// Creates the pool. No connection is made until one is needed, so this
/// succeeds while Postgres is down; callers see errors per request instead.
pub fn connect(settings: &PoolSettings) -> Result<Pool, StoreError> {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(settings.url.clone());
    config.manager = Some(ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    });
    let mut pool = deadpool_postgres::PoolConfig::new(settings.max_size);
    pool.timeouts = Timeouts {
        wait: Some(settings.wait_timeout),
        create: Some(settings.wait_timeout),
        recycle: Some(settings.wait_timeout),
    };
    config.pool = Some(pool);
    Ok(config.create_pool(Some(Runtime::Tokio1), NoTls)?)
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
