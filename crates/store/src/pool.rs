//! Connection pool and migrations.

use std::time::Duration;

use deadpool_postgres::{
    CreatePoolError, Hook, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime,
};
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
    /// How long a session of a process that stopped answering (frozen, or
    /// cut off from the database) may keep what it holds; see
    /// [`bounds`]. Derived from the worker lease (a third of it), so that
    /// a frozen worker's locks are gone before its lease runs out.
    pub bound: Duration,
    /// The sessions' `application_name` (who they are in
    /// `pg_stat_activity`).
    pub application_name: Option<String>,
}

/// [`PoolSettings::bound`] for the default lease of 30 s.
pub const DEFAULT_SESSION_BOUND: Duration = Duration::from_secs(10);

impl PoolSettings {
    /// `max_size` connections to `url`, waiting up to 5 s for one, with the
    /// default session bound.
    pub fn new(url: &str, max_size: usize) -> Self {
        PoolSettings {
            url: url.to_owned(),
            max_size,
            wait_timeout: Duration::from_secs(5),
            bound: DEFAULT_SESSION_BOUND,
            application_name: None,
        }
    }

    /// With another session bound (see [`PoolSettings::bound`]).
    pub fn bounded(mut self, bound: Duration) -> Self {
        self.bound = bound;
        self
    }

    /// With an `application_name`.
    pub fn named(mut self, name: &str) -> Self {
        self.application_name = Some(name.to_owned());
        self
    }
}

/// The session settings that bound what a frozen or cut-off process holds,
/// each `bound` (or a fraction of it):
///
/// - `idle_in_transaction_session_timeout`: a process frozen (or cut off)
///   between the statements of a transaction loses its session, and the
///   transaction's locks with it;
/// - `lock_timeout`: no statement waits longer than that for a lock (a
///   frozen process's row lock, say): it fails with 55P03 and is tried
///   again, like an outage;
/// - `tcp_user_timeout` and TCP keepalives, on both ends: a connection to a
///   process cut off from the network is closed by the server (its
///   statement and transaction end) and by the client (its pool makes a
///   new one), instead of after the kernel's two hours.
///
/// A session frozen mid-statement waiting on its own client (a COPY's rows)
/// is out of their reach: the reapers end those (`jobs::terminate_stuck`).
fn bounds(bound: Duration) -> String {
    let ms = bound.as_millis().max(100);
    let (idle, interval) = keepalives(bound);
    format!(
        "-c idle_in_transaction_session_timeout={ms} -c lock_timeout={ms} \
         -c tcp_user_timeout={ms} -c tcp_keepalives_idle={} \
         -c tcp_keepalives_interval={} -c tcp_keepalives_count={KEEPALIVE_PROBES}",
        idle.as_secs(),
        interval.as_secs()
    )
}

const KEEPALIVE_PROBES: u32 = 3;

/// Keepalive idle time and probe interval (whole seconds, at least one):
/// a dead peer is found within about `bound`.
fn keepalives(bound: Duration) -> (Duration, Duration) {
    let seconds = bound.as_secs();
    (
        Duration::from_secs((seconds / 2).max(1)),
        Duration::from_secs((seconds / 6).max(1)),
    )
}

/// How syncway's sessions plan statements, and when they plan again.
///
/// Every statement is prepared once per connection and runs with a generic
/// plan (`plan_cache_mode = force_generic_plan`). Left to choose, Postgres
/// planned the batched statements (`claim_many`, `commit_many`) afresh on
/// almost every execution, because a plan that knows the array sizes looks
/// cheaper; planning the commit statement cost more CPU than running it.
///
/// A cached plan is only as good as the table sizes it was made for, and
/// Postgres keeps it until the tables are analyzed. On a fresh database the
/// job and entity tables grow from nothing in seconds, and a plan made while
/// they were empty keeps scanning them sequentially (measured: the commit
/// statement read every stored entity; half the throughput after 20,000
/// jobs). So each connection drops its prepared statements, to prepare and
/// plan them again, on its checkouts number 16, 32, 64, ... 4,096, and then
/// on every 4,096th: often while it is young, rarely after.
///
/// JIT compilation is off (`jit = off`). Our statements are short, and a
/// generic plan's estimates grow with the tables: once the entity table held
/// a few hundred thousand rows, every batch commit crossed `jit_above_cost`
/// and spent 100-115 ms compiling itself, more than it spent running
/// (measured with auto_explain on the 1M-entity sync benchmark).
const SESSION_OPTIONS: &str = "-c plan_cache_mode=force_generic_plan -c jit=off";
const PLAN_REFRESH_FIRST: usize = 16;
const PLAN_REFRESH_LIMIT: usize = 4096;

fn refresh_plans_now(checkouts: usize) -> bool {
    checkouts >= PLAN_REFRESH_FIRST
        && (checkouts.is_multiple_of(PLAN_REFRESH_LIMIT)
            || (checkouts < PLAN_REFRESH_LIMIT && checkouts.is_power_of_two()))
}

/// Creates the pool. No connection is made until one is needed, so this
/// succeeds while Postgres is down; callers see errors per request instead.
pub fn connect(settings: &PoolSettings) -> Result<Pool, StoreError> {
    let mut config: tokio_postgres::Config = settings.url.parse()?;
    // Keep whatever options the URL carries; ours go after them.
    let ours = format!("{SESSION_OPTIONS} {}", bounds(settings.bound));
    let options = match config.get_options() {
        Some(options) if !options.trim().is_empty() => format!("{options} {ours}"),
        _ => ours,
    };
    config.options(&options);
    let (idle, interval) = keepalives(settings.bound);
    config
        .keepalives(true)
        .keepalives_idle(idle)
        .keepalives_interval(interval)
        .keepalives_retries(KEEPALIVE_PROBES)
        .tcp_user_timeout(settings.bound)
        .connect_timeout(settings.bound);
    if let Some(name) = &settings.application_name {
        config.application_name(name);
    }
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
        .post_recycle(Hook::sync_fn(|client, metrics| {
            if refresh_plans_now(metrics.recycle_count) {
                client.statement_cache.clear();
            }
            Ok(())
        }))
        .build()
        .map_err(|error| StoreError::CreatePool(CreatePoolError::Build(error)))
}

/// What both binaries do at start-up: apply the migrations (when `migrate`)
/// and create the pool.
pub async fn open(settings: &PoolSettings, migrate: bool) -> Result<Pool, StoreError> {
    if migrate {
        self::migrate(&settings.url).await?;
    }
    connect(settings)
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

#[cfg(test)]
mod tests {
    use super::{bounds, keepalives, refresh_plans_now};
    use std::time::Duration;

    #[test]
    fn sessions_are_bounded_by_a_third_of_the_lease_or_about() {
        // The default lease (30 s): a bound of 10 s; keepalives find a dead
        // peer after 5 + 3 x 1 s.
        assert_eq!(
            keepalives(Duration::from_secs(10)),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
        let options = bounds(Duration::from_secs(10));
        for setting in [
            "idle_in_transaction_session_timeout=10000",
            "lock_timeout=10000",
            "tcp_user_timeout=10000",
            "tcp_keepalives_idle=5",
            "tcp_keepalives_interval=1",
            "tcp_keepalives_count=3",
        ] {
            assert!(options.contains(setting), "{setting} in {options}");
        }
        // A lease of 5 s: whole seconds, at least one.
        assert_eq!(
            keepalives(Duration::from_millis(1667)),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
    }

    #[test]
    fn plans_refresh_often_while_young_then_every_4096_checkouts() {
        let refreshed: Vec<usize> = (0..=20_000).filter(|&n| refresh_plans_now(n)).collect();
        assert_eq!(
            refreshed,
            [
                16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288, 16384, 20480
            ]
            .into_iter()
            .filter(|&n| n <= 20_000)
            .collect::<Vec<_>>()
        );
    }
}
