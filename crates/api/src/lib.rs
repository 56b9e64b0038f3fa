//! `syncway-api`: the HTTP API (Airweave-compatible), and the outbox relay
//! that publishes accepted jobs to RabbitMQ.
//!
//! [`run`] is the whole process minus flag parsing: tests call it with
//! listeners on port 0 and a shutdown future, exactly as `main` does.

mod auth;
mod containment;
mod error;
mod extract;
mod metrics;
mod ops;
mod relay;
mod routes;
mod schedule_input;
mod triggers;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, Request};
use secrecy::ExposeSecret;
use syncway_runtime::{CredentialCipher, Settings, telemetry};
use syncway_store::Pool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, FieldError};
pub use metrics::ApiMetrics;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    pool: Pool,
    cipher: CredentialCipher,
    relay_wake: Arc<Notify>,
    broker_ready: Arc<AtomicBool>,
    metrics: ApiMetrics,
    triggers: triggers::TriggerBatcher,
    policy: syncway_egress::Policy,
    /// The schedulers' jitter cap (`scheduler.jitter_seconds`): the API
    /// plans a connection's next run as the schedulers will.
    schedule_jitter: std::time::Duration,
    operations: Operations,
}

/// What the operator's routes need.
pub struct Operations {
    /// The bootstrap key's organization: its keys are operator keys.
    pub operator_organization: Option<uuid::Uuid>,
    pub amqp_url: String,
    pub namespace: String,
    /// The latest snapshot read by this process.
    pub latest: Arc<tokio::sync::RwLock<Option<ops::figures::OpsFigures>>>,
}

impl AppState {
    pub fn new(
        pool: Pool,
        cipher: CredentialCipher,
        metrics: ApiMetrics,
        policy: syncway_egress::Policy,
        schedule_jitter: std::time::Duration,
        operations: Operations,
    ) -> Self {
        AppState {
            inner: Arc::new(StateInner {
                triggers: triggers::spawn(pool.clone()),
                pool,
                cipher,
                policy,
                schedule_jitter,
                operations,
                relay_wake: Arc::new(Notify::new()),
                broker_ready: Arc::new(AtomicBool::new(false)),
                metrics,
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

    pub(crate) fn operator_organization(&self) -> Option<uuid::Uuid> {
        self.inner.operations.operator_organization
    }

    pub(crate) fn amqp_url(&self) -> &str {
        &self.inner.operations.amqp_url
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.inner.operations.namespace
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

    /// Tells the relay that a job was committed to the outbox.
    pub(crate) fn wake_relay(&self) {
        self.inner.relay_wake.notify_one();
    }

    pub(crate) fn broker_ready(&self) -> bool {
        self.inner.broker_ready.load(Ordering::Relaxed)
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP application: routes, auth, request ids, tracing, panic guard.
pub fn app(state: AppState) -> Router {
    routes::router(state.clone())
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            axum::response::IntoResponse::into_response(ApiError::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .layer(axum::middleware::from_fn_with_state(state, metrics::record))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                )
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Runs the API process until `shutdown` resolves: migrations (unless
/// disabled), the bootstrap key, the outbox relay, the HTTP API on
/// `listener` and metrics on `metrics_listener`. On shutdown it stops
/// accepting, finishes in-flight requests, and lets the relay publish what
/// is committed before returning.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // reqwest (the management API's client) is built without a default TLS
    // provider in this workspace (see ARCHITECTURE.md, reqwest): ring is
    // installed first. Refused harmlessly when one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pool = syncway_store::open(
        &settings.database.url,
        settings.database.pool_size,
        settings.database.migrate,
    )
    .await
    .context("opening the database (migrations)")?;
    let mut operator_organization = None;
    if let Some(key) = &settings.auth.bootstrap_api_key {
        let client = pool.get().await.context("connecting to Postgres")?;
        operator_organization = Some(
            syncway_store::api_keys::ensure_organization_with_key(
                &client,
                "default",
                key.expose_secret(),
            )
            .await
            .context("creating the bootstrap organization and key")?,
        );
        tracing::info!("bootstrap API key installed for organization \"default\"");
    }
    let cipher = CredentialCipher::from_settings(&settings.security)?;
    let policy = syncway_runtime::egress::policy(&settings).await?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("syncway");
    let metrics = ApiMetrics::new(registry.sub_registry_with_prefix("api"));
    let ops_metrics = ops::snapshot::OpsMetrics::new(&mut registry);
    let latest = Arc::new(tokio::sync::RwLock::new(None));
    let state = AppState::new(
        pool.clone(),
        cipher,
        metrics,
        policy,
        std::time::Duration::from_secs(settings.scheduler.jitter_seconds),
        Operations {
            operator_organization,
            amqp_url: settings.amqp.url.clone(),
            namespace: settings.amqp.namespace.clone(),
            latest: latest.clone(),
        },
    );

    let stop = CancellationToken::new();
    let relay = tokio::spawn(
        relay::Relay {
            pool,
            amqp_url: settings.amqp.url.clone(),
            namespace: settings.amqp.namespace.clone(),
            wake: state.inner.relay_wake.clone(),
            ready: state.inner.broker_ready.clone(),
            metrics: state.metrics().clone(),
        }
        .run(stop.clone()),
    );
    let refresher = tokio::spawn(
        ops::snapshot::Refresher {
            pool: state.pool().clone(),
            amqp_url: settings.amqp.url.clone(),
            namespace: settings.amqp.namespace.clone(),
            management_url: settings.amqp.management_url(),
            interval: std::time::Duration::from_millis(settings.metrics.snapshot_interval_ms),
            metrics: ops_metrics,
            latest,
        }
        .run(stop.clone()),
    );
    let metrics_server = tokio::spawn(telemetry::serve(
        metrics_listener,
        telemetry::metrics_router(Arc::new(registry)),
        stop.clone().cancelled_owned(),
    ));

    tracing::info!(address = %listener.local_addr()?, "API listening");
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    // Requests are drained; let the relay publish what they committed.
    stop.cancel();
    let _ = relay.await;
    let _ = refresher.await;
    let _ = metrics_server.await;
    served.context("serving HTTP")
}
