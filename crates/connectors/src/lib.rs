//! Sources of entities. A connector reads its source in batches (bounded
//! memory whatever the source size), starting after the stored cursor for an
//! incremental sync or from the beginning for a full sync, and reports with
//! each batch the cursor that covers everything emitted so far.
//!
//! This crate knows nothing of HTTP serving, AMQP or syncway's own database.
//!
//! Adding a connector: write a module with a type implementing [`Source`],
//! add its config variant to `syncway_model::ConnectorConfig`, and add one
//! line to [`open`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use syncway_egress::Policy;
use syncway_model::{ConnectorConfig, ErrorCategory};

pub mod http_json;
pub mod local_files;
pub mod mysql;
pub mod postgres;
pub mod postgres_cdc;
mod reader;
pub mod s3;
pub mod stub;

/// An entity as the source produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEntity {
    pub id: String,
    pub payload: serde_json::Value,
}

/// One batch from a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityBatch {
    pub entities: Vec<SourceEntity>,
    /// Ids the source reports deleted (incremental syncs).
    pub deleted: Vec<String>,
    /// Entities the source could not produce; counted, the sync goes on.
    pub failed: u64,
    /// Why, for the first few of them ([`EntityBatch::fail`]).
    pub failures: Vec<EntityFailure>,
    /// The cursor covering everything emitted up to and including this batch,
    /// or `None` when the source has no cursor.
    pub cursor: Option<serde_json::Value>,
}

/// An entity that could not be stored, and why (shown in the job's
/// `error_details.failed_entities`). The reason never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityFailure {
    pub entity_id: String,
    pub reason: String,
}

/// Reasons kept per batch and per job (the job's capped sample, shown in
/// `error_details.failed_entities`); the count goes on beyond them.
pub const MAX_FAILURE_REASONS: usize = 100;

impl EntityBatch {
    /// Counts one failed entity, keeping its reason while there is room.
    pub fn fail(&mut self, entity_id: impl Into<String>, reason: impl Into<String>) {
        self.failed += 1;
        if self.failures.len() < MAX_FAILURE_REASONS {
            self.failures.push(EntityFailure {
                entity_id: entity_id.into(),
                reason: reason.into(),
            });
        }
    }
}

/// What one sync may consume (settings section `connectors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An entity whose payload serializes larger counts as failed.
    pub max_entity_bytes: u64,
    /// A batch ends once its entities reach this many bytes.
    pub max_batch_bytes: u64,
    /// An HTTP response larger than this fails the sync.
    pub max_response_bytes: u64,
    pub max_pages: u64,
    pub postgres_connect_timeout: Duration,
    pub postgres_statement_timeout: Duration,
    pub postgres_keepalive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entity_bytes: 2 << 20,
            max_batch_bytes: 8 << 20,
            max_response_bytes: 32 << 20,
            max_pages: 100_000,
            postgres_connect_timeout: Duration::from_secs(10),
            postgres_statement_timeout: Duration::from_secs(300),
            postgres_keepalive: Duration::from_secs(30),
        }
    }
}

/// How a source failed. The worker decides what each means for the job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// May succeed if tried again later (network, rate limit, outage).
    #[error("{message}")]
    Transient {
        message: String,
        /// How long the source asked us to wait, if it said.
        retry_after: Option<std::time::Duration>,
    },
    /// The credentials are invalid or expired; retrying cannot help.
    #[error("{message}")]
    Credentials {
        category: ErrorCategory,
        message: String,
    },
    /// The configuration or the source is wrong; retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

impl SourceError {
    /// A short machine-readable name of the kind, for `error_details`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Transient { .. } => "transient",
            SourceError::Credentials { .. } => "credentials",
            SourceError::Permanent(_) => "permanent",
        }
    }
}

/// A source being read.
pub trait Source: Send {
    /// The next batch, or `None` when the source is exhausted.
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<EntityBatch>, SourceError>>;
}

/// The deployment-wide budgets of requests to source hosts
/// (`limits.source_requests_per_second`): every request an `http_json`
/// connector makes draws from the budget of its host, if it has one.
pub trait RequestBudget: Send + Sync {
    /// Returns once a request to `host` may be made: at once for a host
    /// without a budget, after a wait for one whose budget is spent. It
    /// fails only when the budget cannot be read (the database is gone).
    fn acquire<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), SourceError>>;
}

/// The ids of the entities syncway has stored for the connection being
/// synced, for a connector that must delete a whole part of them (a
/// `postgres_cdc` TRUNCATE).
pub trait StoredIds: Send + Sync {
    /// Up to `limit` stored ids starting with `prefix`, after `after`, in
    /// order.
    fn page<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>>;
}

/// Where a sync starts, and what it may reach and consume.
#[derive(Clone, Default)]
pub struct SyncStart {
    /// The stored cursor for an incremental sync; `None` for a full sync.
    pub cursor: Option<serde_json::Value>,
    /// Decrypted credentials, if the connection has any.
    pub credentials: Option<serde_json::Value>,
    /// The connection's `schedule.cursor_field`, for connectors whose
    /// config may leave the cursor column to it.
    pub cursor_field: Option<String>,
    /// What the connector may connect to or read.
    pub policy: Arc<Policy>,
    pub limits: Limits,
    /// The request budgets; `None`: none.
    pub budget: Option<Arc<dyn RequestBudget>>,
    /// The connection's id (names what a connector creates at the source).
    pub connection: String,
    /// The stored entities' ids; `None`: not readable here.
    pub stored: Option<Arc<dyn StoredIds>>,
}

// Never the credentials.
impl std::fmt::Debug for SyncStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStart")
            .field("cursor", &self.cursor)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field("cursor_field", &self.cursor_field)
            .field("connection", &self.connection)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SourceError {
    /// A denial by the egress policy: permanent, and its text names the
    /// host and the setting that would allow it.
    pub fn denied(denied: &syncway_egress::Denied) -> Self {
        SourceError::Permanent(denied.to_string())
    }
}

/// Installs the TLS crypto provider (ring) that HTTP clients use; calling it
/// again is harmless. reqwest is built without a provider of its own (the
/// default one needs a C toolchain for aws-lc), so every process that builds
/// a reqwest client calls this first: the worker (through `http_json`), the
/// tests and the bench.
pub fn install_tls_provider() {
    // Refused (harmlessly) when a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Opens the source a configuration describes.
pub fn open(config: &ConnectorConfig, start: SyncStart) -> Result<Box<dyn Source>, SourceError> {
    match config {
        ConnectorConfig::Stub(config) => Ok(Box::new(stub::StubSource::new(config, &start)?)),
        ConnectorConfig::Postgres(config) => {
            Ok(Box::new(postgres::PostgresSource::open(config, &start)?))
        }
        ConnectorConfig::LocalFiles(config) => Ok(Box::new(local_files::LocalFilesSource::new(
            config, &start,
        )?)),
        ConnectorConfig::HttpJson(config) => {
            Ok(Box::new(http_json::HttpJsonSource::new(config, &start)?))
        }
        ConnectorConfig::Mysql(config) => Ok(Box::new(mysql::MysqlSource::open(config, &start)?)),
        ConnectorConfig::S3(config) => Ok(Box::new(s3::S3Source::new(config, &start)?)),
        ConnectorConfig::PostgresCdc(config) => Ok(Box::new(
            postgres_cdc::PostgresCdcSource::open(config, &start)?,
        )),
    }
}

/// Releases what a connector made at its source for a connection that is
/// now deleted (a `postgres_cdc` slot). Nothing for the others.
pub async fn release(
    config: &ConnectorConfig,
    credentials: Option<&serde_json::Value>,
    connection: &str,
    policy: &Policy,
    limits: &Limits,
) -> Result<(), SourceError> {
    match config {
        ConnectorConfig::PostgresCdc(config) => {
            postgres_cdc::release(config, credentials, connection, policy, limits).await
        }
        _ => Ok(()),
    }
}
