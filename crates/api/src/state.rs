//! What every request handler shares: the pool, the cipher, the trigger
//! batcher, the limits, the relay's signals and the operations snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use syncway_runtime::CredentialCipher;
use syncway_store::Pool;
use tokio::sync::Notify;

use crate::auth::KeyUsage;
use crate::limits::Limits;
use crate::metrics::ApiMetrics;
use crate::{ops, triggers};

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<StateInner>,
}

pub(crate) struct StateInner {
    pool: Pool,
    cipher: CredentialCipher,
    pub(crate) relay_wake: Arc<Notify>,
    pub(crate) broker_ready: Arc<AtomicBool>,
    metrics: ApiMetrics,
    triggers: triggers::TriggerBatcher,
    policy: syncway_egress::Policy,
    /// The schedulers' jitter cap (`scheduler.jitter_seconds`): the API
    /// plans a connection's next run as the schedulers will.
    schedule_jitter: std::time::Duration,
    operations: Operations,
    limits: Arc<Limits>,
    trusted_proxies: crate::client_address::TrustedProxies,
    key_usage: KeyUsage,
    hub: Arc<crate::events::Hub>,
    /// Cancelled when the process starts shutting down: event streams end.
    streams_stop: tokio_util::sync::CancellationToken,
}

/// What the operator's routes need.
pub struct Operations {
    pub amqp_url: String,
    pub namespace: String,
    /// `auth.operator_organization`: the only organization whose operator
    /// keys act as operator keys.
    pub operator_organization: String,
    /// The latest snapshot read by this process.
    pub latest: Arc<tokio::sync::RwLock<Option<ops::figures::OpsFigures>>>,
}

/// The parts of [`AppState`] made outside it.
pub struct StateParts {
    pub pool: Pool,
    pub cipher: CredentialCipher,
    pub metrics: ApiMetrics,
    pub policy: syncway_egress::Policy,
    pub schedule_jitter: std::time::Duration,
    pub operations: Operations,
    pub limits: Arc<Limits>,
    pub trusted_proxies: crate::client_address::TrustedProxies,
}

impl AppState {
    pub fn new(parts: StateParts) -> Self {
        AppState {
            inner: Arc::new(StateInner {
                triggers: triggers::spawn(parts.pool.clone()),
                pool: parts.pool,
                cipher: parts.cipher,
                policy: parts.policy,
                schedule_jitter: parts.schedule_jitter,
                operations: parts.operations,
                relay_wake: Arc::new(Notify::new()),
                broker_ready: Arc::new(AtomicBool::new(false)),
                metrics: parts.metrics,
                limits: parts.limits,
                trusted_proxies: parts.trusted_proxies,
                key_usage: KeyUsage::default(),
                hub: Arc::default(),
                streams_stop: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub(crate) fn triggers(&self) -> &triggers::TriggerBatcher {
        &self.inner.triggers
    }

    pub(crate) fn cipher(&self) -> &CredentialCipher {
        &self.inner.cipher
    }

    /// What connectors may reach: checked when connections are written.
    pub(crate) fn policy(&self) -> &syncway_egress::Policy {
        &self.inner.policy
    }

    pub(crate) fn amqp_url(&self) -> &str {
        &self.inner.operations.amqp_url
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.inner.operations.namespace
    }

    pub(crate) fn operator_organization(&self) -> &str {
        &self.inner.operations.operator_organization
    }

    pub(crate) fn ops_latest(&self) -> &tokio::sync::RwLock<Option<ops::figures::OpsFigures>> {
        &self.inner.operations.latest
    }

    pub(crate) fn schedule_jitter(&self) -> std::time::Duration {
        self.inner.schedule_jitter
    }

    pub(crate) fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    pub(crate) fn limits(&self) -> &Arc<Limits> {
        &self.inner.limits
    }

    pub(crate) fn trusted_proxies(&self) -> &crate::client_address::TrustedProxies {
        &self.inner.trusted_proxies
    }

    pub(crate) fn key_usage(&self) -> &KeyUsage {
        &self.inner.key_usage
    }

    pub(crate) fn hub(&self) -> &Arc<crate::events::Hub> {
        &self.inner.hub
    }

    pub(crate) fn streams_stop(&self) -> &tokio_util::sync::CancellationToken {
        &self.inner.streams_stop
    }

    /// Tells the relay that a job was committed to the outbox.
    pub(crate) fn wake_relay(&self) {
        self.inner.relay_wake.notify_one();
    }

    pub(crate) fn broker_ready(&self) -> bool {
        self.inner.broker_ready.load(Ordering::Relaxed)
    }
}
