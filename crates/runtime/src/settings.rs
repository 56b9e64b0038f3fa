//! Configuration: built-in defaults, then an optional TOML file
//! (`--config PATH` or `SYNCWAY_CONFIG`), then `SYNCWAY_<SECTION>__<KEY>`
//! environment variables on top.

use std::path::Path;

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;

/// Which binary is loading: some defaults differ (the metrics port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub api: ApiSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    pub worker: WorkerSettings,
    pub retry: RetrySettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub security: SecuritySettings,
    #[serde(default)]
    pub connectors: ConnectorsSettings,
    #[serde(default)]
    pub limits: LimitsSettings,
    #[serde(default)]
    pub scheduler: SchedulerSettings,
    #[serde(default)]
    pub sync: SyncSettings,
    #[serde(default)]
    pub retention: crate::retention_settings::RetentionSettings,
    #[serde(default)]
    pub webhooks: crate::webhook_settings::WebhookSettings,
}

/// How syncs treat what they store (CONTRACT.md §2).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SyncSettings {
    /// The mass-deletion guard applies to connections with at least this
    /// many stored entities (a full sync of fewer deletes what it must).
    pub mass_delete_min_entities: i64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            mass_delete_min_entities: 1000,
        }
    }
}

/// The scheduler loop of worker processes (CONTRACT.md §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SchedulerSettings {
    /// Run the scheduler in this worker process (any number may).
    pub enabled: bool,
    /// Each connection's runs start up to this long after their tick
    /// (stable per connection, at most a fifth of the interval).
    pub jitter_seconds: u64,
    /// How often a scheduler looks for due connections.
    pub interval_ms: u64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            enabled: true,
            jitter_seconds: 30,
            interval_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecuritySettings {
    /// 32-byte key (64 hex characters) sealing source credentials at rest.
    pub encryption_key: Option<SecretString>,
    /// Keys used before `encryption_key` (comma-separated): credentials
    /// sealed with them still open, and are sealed again with the current
    /// key when next written.
    #[serde(default, deserialize_with = "secret_list")]
    pub previous_keys: Vec<SecretString>,
    /// Without `encryption_key`, start anyway and seal credentials with a
    /// public development key (development machines only).
    #[serde(default)]
    pub allow_development_key: bool,
}

/// What tenants' connectors may reach and consume (CONTRACT.md §4).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConnectorsSettings {
    pub local_files: LocalFilesSettings,
    /// CIDRs (or addresses) that `postgres` and `http_json` may reach
    /// although the default policy denies them.
    #[serde(deserialize_with = "comma_list")]
    pub allow_cidrs: Vec<String>,
    /// Host names allowed likewise, matched before resolution.
    #[serde(deserialize_with = "comma_list")]
    pub allow_hosts: Vec<String>,
    /// An entity whose serialized payload is larger counts as failed.
    pub max_entity_bytes: u64,
    /// A source batch ends once its entities reach this many bytes.
    pub max_batch_bytes: u64,
    /// An `http_json` response larger than this fails the job.
    pub max_response_bytes: u64,
    /// Pages one `http_json` sync may read.
    pub max_pages: u64,
    pub postgres_connect_timeout_seconds: u64,
    /// `statement_timeout` of the source session.
    pub postgres_statement_timeout_seconds: u64,
    /// TCP keepalive idle time of the source connection.
    pub postgres_keepalive_seconds: u64,
}

impl Default for ConnectorsSettings {
    fn default() -> Self {
        ConnectorsSettings {
            local_files: LocalFilesSettings::default(),
            allow_cidrs: Vec::new(),
            allow_hosts: Vec::new(),
            max_entity_bytes: 2 << 20,
            max_batch_bytes: 8 << 20,
            max_response_bytes: 32 << 20,
            max_pages: 100_000,
            postgres_connect_timeout_seconds: 10,
            postgres_statement_timeout_seconds: 300,
            postgres_keepalive_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LocalFilesSettings {
    /// Directories a `local_files` path must resolve inside; none disables
    /// the connector.
    #[serde(deserialize_with = "comma_list")]
    pub roots: Vec<String>,
}

/// Fair share between organizations.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitsSettings {
    /// Running jobs one organization may hold at once; unset: no limit. Its
    /// other jobs wait in Postgres until one of its jobs stops running.
    pub max_running_jobs_per_org: Option<u32>,
    /// Requests one API key may make per second, for the deployment (a
    /// token bucket per key in each API process, at its share).
    pub requests_per_second: u32,
    /// The bucket's size: requests a key may make at once.
    pub burst: u32,
    /// Requests with an unknown, revoked or expired key one client address
    /// may make per minute; beyond that its failing requests get 429 (valid
    /// keys from it go on).
    pub failed_auth_per_minute: u32,
    /// Event streams one API key may hold open (for the deployment: each
    /// API process allows its share).
    pub streams_per_key: u32,
    /// Running jobs each listed source type may hold at once, deployment-wide
    /// (`http_json=20,postgres=8`); its other jobs wait held.
    #[serde(deserialize_with = "crate::key_values::key_values")]
    pub max_running_jobs_per_source_type: std::collections::BTreeMap<String, u32>,
    /// Requests per second an `http_json` connector may make to a host,
    /// deployment-wide, by host or `*.domain` (`api.example.com=10`).
    #[serde(deserialize_with = "crate::key_values::key_values")]
    pub source_requests_per_second: std::collections::BTreeMap<String, f64>,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            max_running_jobs_per_org: None,
            requests_per_second: 10_000,
            burst: 20_000,
            failed_auth_per_minute: 60,
            streams_per_key: 100,
            max_running_jobs_per_source_type: std::collections::BTreeMap::new(),
            source_requests_per_second: std::collections::BTreeMap::new(),
        }
    }
}

/// A list given as a TOML array, or as one comma-separated string (as
/// environment variables give it); an empty string is an empty list.
fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
        Number(serde_json::Number),
    }
    let raw = Raw::deserialize(deserializer)?;
    let text = match raw {
        Raw::List(items) => {
            return Ok(items.into_iter().filter(|i| !i.trim().is_empty()).collect());
        }
        Raw::Text(text) => text,
        Raw::Number(number) => number.to_string(),
    };
    Ok(text
        .split(',')
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

fn secret_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SecretString>, D::Error> {
    Ok(comma_list(deserializer)?
        .into_iter()
        .map(SecretString::from)
        .collect())
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    /// Run migrations at start-up.
    pub migrate: bool,
    pub pool_size: usize,
}

#[derive(Clone, Deserialize)]
pub struct AmqpSettings {
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub namespace: String,
    /// The RabbitMQ management API (queue `unacked` figures); by default
    /// `http://` + the first AMQP URL's user, password and host, port 15672.
    #[serde(default)]
    pub management_url: Option<String>,
}

impl AmqpSettings {
    /// The management API's base URL: the setting, or derived from the
    /// first AMQP URL.
    pub fn management_url(&self) -> Option<String> {
        if let Some(url) = &self.management_url {
            return Some(url.trim_end_matches('/').to_owned());
        }
        let first = self.url.split(',').map(str::trim).find(|u| !u.is_empty())?;
        let amqp = url::Url::parse(first).ok()?;
        let host = amqp.host_str()?;
        let credentials = match (amqp.username(), amqp.password()) {
            ("", _) => "guest:guest@".to_owned(),
            (user, Some(password)) => format!("{user}:{password}@"),
            (user, None) => format!("{user}@"),
        };
        Some(format!("http://{credentials}{host}:15672"))
    }
}

// The URLs may carry passwords: Debug shows them without.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &syncway_egress::redact::url(&self.url))
            .field("migrate", &self.migrate)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &syncway_egress::redact::url(&self.url))
            .field("namespace", &self.namespace)
            .field(
                "management_url",
                &self
                    .management_url
                    .as_deref()
                    .map(syncway_egress::redact::url),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    pub listen: String,
    /// A client must send a request's headers within this long.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Ordinary requests (not event streams) are answered within this long.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How often the jobs that event streams watch are read (one statement
    /// per API process, however many streams).
    #[serde(default = "default_events_poll_ms")]
    pub events_poll_ms: u64,
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` / `Forwarded`
    /// headers name the client; from any other peer they are ignored.
    #[serde(default, deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<String>,
}

fn default_events_poll_ms() -> u64 {
    200
}

fn default_header_timeout() -> u64 {
    10
}

fn default_request_timeout() -> u64 {
    30
}

fn default_max_connections() -> usize {
    4096
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// When set, start-up ensures that the operator organization owns this
    /// key, as an operator key.
    pub bootstrap_api_key: Option<SecretString>,
    /// The organization whose operator keys are operator keys (the
    /// bootstrap key's); an operator key of any other organization is a
    /// member key.
    pub operator_organization: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            bootstrap_api_key: None,
            operator_organization: "default".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Jobs one worker process runs at once (and its prefetch).
    pub concurrency: u16,
    /// How long a job's lease lasts without a heartbeat.
    pub lease_seconds: u64,
    /// How long SIGTERM waits for running jobs before handing them back.
    pub shutdown_grace_seconds: u64,
    /// How often the reaper looks for jobs nobody is working on.
    pub reap_interval_seconds: u64,
    /// A pending job whose message has not been claimed for this long is
    /// re-enqueued (its message may be lost), and a re-enqueued job again
    /// after this long.
    pub requeue_after_seconds: u64,
    /// A job running longer than this (since it first started) fails.
    pub max_job_seconds: u64,
    /// How often the worker refreshes its row in the worker registry; it
    /// is shown as gone after three missed heartbeats.
    #[serde(default = "default_heartbeat_seconds")]
    pub heartbeat_seconds: f64,
    /// What the batches of all the process's jobs may hold at once (from
    /// the start of a batch's read until its commit); jobs wait for room.
    /// Unset: half the cgroup's memory limit, else 1 GiB.
    #[serde(default)]
    pub memory_budget_bytes: Option<u64>,
}

fn default_heartbeat_seconds() -> f64 {
    5.0
}

impl WorkerSettings {
    /// How long a database session of a process that stopped answering may
    /// keep its locks (`syncway_store::PoolSettings::bound`): a third of
    /// the lease, so that a frozen or cut-off worker's locks are gone well
    /// before its lease runs out and another worker takes the job over; at
    /// least a second, so that a busy but live process is never cut off
    /// (tests run leases of 2 s).
    pub fn session_bound(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64((self.lease_seconds as f64 / 3.0).max(1.0))
    }

    /// The AMQP heartbeat asked of the broker, in seconds: the session
    /// bound, so that a connection cut off is closed within a few seconds
    /// and its deliveries go to other consumers.
    pub fn heartbeat_seconds(&self) -> u16 {
        u16::try_from(self.session_bound().as_secs().max(1)).unwrap_or(u16::MAX)
    }
}

/// Retries of transient failures, through the broker's delay queues.
#[derive(Debug, Clone, Deserialize)]
pub struct RetrySettings {
    /// Runs of a job in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each one after.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    pub listen: String,
    /// How often the deployment's figures (queues, jobs, workers) are
    /// refreshed into the shared snapshot, and read from it.
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
}

fn default_snapshot_interval_ms() -> u64 {
    5000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is not set.
    pub level: String,
}

impl Settings {
    /// Loads the layers. `file` falls back to `SYNCWAY_CONFIG`.
    pub fn load(role: Role, file: Option<&Path>) -> anyhow::Result<Settings> {
        let from_env = std::env::var_os("SYNCWAY_CONFIG").map(std::path::PathBuf::from);
        let file = file.map(Path::to_path_buf).or(from_env);
        let metrics_listen = match role {
            Role::Api => "0.0.0.0:9090",
            Role::Worker => "0.0.0.0:9091",
        };
        let mut builder = config::Config::builder()
            .set_default("database.url", "postgres://postgres@127.0.0.1:5432/syncway")?
            .set_default("database.migrate", true)?
            .set_default("database.pool_size", 16)?
            .set_default("amqp.url", "amqp://guest:guest@127.0.0.1:5672/%2f")?
            .set_default("amqp.namespace", "syncway")?
            .set_default("api.listen", "0.0.0.0:8080")?
            .set_default("worker.concurrency", 4)?
            .set_default("worker.lease_seconds", 30)?
            .set_default("worker.shutdown_grace_seconds", 25)?
            .set_default("worker.reap_interval_seconds", 10)?
            .set_default("worker.requeue_after_seconds", 300)?
            .set_default("worker.max_job_seconds", 86_400)?
            .set_default("retry.max_attempts", 5)?
            .set_default("retry.base_delay_ms", 5000)?
            .set_default("retry.max_delay_ms", 300_000)?
            .set_default("metrics.listen", metrics_listen)?
            .set_default("log.format", "text")?
            .set_default("log.level", "info")?;
        if let Some(path) = &file {
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("SYNCWAY")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .with_context(|| match &file {
                Some(path) => format!("invalid configuration (file {})", path.display()),
                None => "invalid configuration".to_owned(),
            })?;
        settings.validate()?;
        Ok(settings)
    }
}

#[path = "settings_checks.rs"]
mod checks;

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
