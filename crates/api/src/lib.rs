//! `syncway-api`: the HTTP API (Airweave-compatible), and the outbox relay
//! that publishes accepted jobs to RabbitMQ.
//!
//! [`run`] is the whole process minus flag parsing: tests call it with
//! listeners on port 0 and a shutdown future, exactly as `main` does.

mod audit;
mod auth;
pub mod cli;
mod client_address;
pub mod commands;
mod console;
mod containment;
mod error;
mod events;
mod extract;
mod http_layers;
mod limits;
mod metrics;
mod openapi;
mod ops;
mod routes;
mod schedule_input;
mod server;
mod state;
mod triggers;
mod webhook_wire;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::Request;
use axum::middleware::from_fn;
use secrecy::ExposeSecret;
use syncway_runtime::{CredentialCipher, Settings, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use error::{ApiError, FieldError};
pub use metrics::ApiMetrics;
pub use openapi::{openapi_json, route_table};
pub use state::{AppState, Operations, StateParts};

use http_layers::REQUEST_ID;

/// The HTTP application: routes, auth, limits, request ids, tracing,
/// timeouts, security headers, panic guard.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    routes::router(state.clone(), request_timeout)
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            axum::response::IntoResponse::into_response(ApiError::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .layer(from_fn(http_layers::security_headers))
        .layer(
            // Every 5xx's cause is logged where it is made (`ApiError`, the
            // panic guard), with the request id: tower-http's own line for
            // a 5xx would repeat it without the cause, at ERROR even for a
            // readiness probe's 503.
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG))
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default();
                    let client = request
                        .extensions()
                        .get::<client_address::ClientAddress>()
                        .map(|client_address::ClientAddress(address)| address.to_string())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %metrics::method_label(request.method()),
                        path = %request.uri().path(),
                        request_id,
                        client,
                    )
                }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state,
            client_address::resolve,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(from_fn(http_layers::sanitize_request_id))
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
    let mut registry = prometheus_client::registry::Registry::with_prefix("syncway");
    let telemetry = ApiTelemetry::register(&mut registry);
    run_with(
        settings,
        listener,
        telemetry,
        Some((metrics_listener, Arc::new(registry))),
        shutdown,
    )
    .await
}

/// The API's metrics, registered on a registry of the caller's.
#[derive(Clone)]
pub struct ApiTelemetry {
    metrics: ApiMetrics,
    relay: syncway_relay::RelayMetrics,
    ops: ops::snapshot::OpsMetrics,
}

impl ApiTelemetry {
    /// Registers the API's families on `registry` (prefix `syncway`).
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let api = registry.sub_registry_with_prefix("api");
        let metrics = ApiMetrics::new(api);
        let relay = syncway_relay::RelayMetrics::register(api);
        ApiTelemetry {
            metrics,
            relay,
            ops: ops::snapshot::OpsMetrics::new(registry),
        }
    }
}

/// [`run`], with metrics registered by the caller; with `serve`, it serves
/// them itself.
pub async fn run_with(
    settings: Settings,
    listener: TcpListener,
    telemetry: ApiTelemetry,
    serve: Option<(TcpListener, Arc<prometheus_client::registry::Registry>)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // reqwest (the management API's client) is built without a default TLS
    // provider in this workspace (see ARCHITECTURE.md, reqwest): ring is
    // installed first. Refused harmlessly when one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Refuse to start without an encryption key before touching anything.
    let cipher = CredentialCipher::from_settings(&settings.security)?;
    let pool = syncway_store::open(
        &syncway_store::PoolSettings::new(&settings.database.url, settings.database.pool_size)
            .bounded(settings.worker.session_bound())
            .named("syncway-api"),
        settings.database.migrate,
    )
    .await
    .context("opening the database (migrations)")?;
    if let Some(key) = &settings.auth.bootstrap_api_key {
        let client = pool.get().await.context("connecting to Postgres")?;
        let bootstrap = syncway_store::api_keys::ensure_bootstrap(
            &client,
            key.expose_secret(),
            &settings.auth.operator_organization,
        )
        .await
        .context("creating the bootstrap organization and key")?;
        if bootstrap.revoked_before {
            tracing::error!(
                "the bootstrap API key (SYNCWAY_AUTH__BOOTSTRAP_API_KEY) was revoked; \
                 it stays revoked: set a new value"
            );
        } else {
            tracing::info!(
                replaced = bootstrap.revoked,
                organization = %settings.auth.operator_organization,
                "bootstrap operator key installed"
            );
        }
    }
    warn_of_stray_operator_keys(&pool, &settings.auth.operator_organization).await;
    let policy = syncway_runtime::egress::policy(&settings).await?;
    let ApiTelemetry {
        metrics,
        relay: relay_metrics,
        ops: ops_metrics,
    } = telemetry;
    let latest = Arc::new(tokio::sync::RwLock::new(None));
    let limits = limits::Limits::new(limits::LimitSettings {
        requests_per_second: settings.limits.requests_per_second,
        burst: settings.limits.burst,
        failed_auth_per_minute: settings.limits.failed_auth_per_minute,
        streams_per_key: settings.limits.streams_per_key,
    });
    let trusted_proxies = client_address::TrustedProxies::parse(&settings.api.trusted_proxies)?;
    let state = AppState::new(StateParts {
        pool: pool.clone(),
        cipher,
        metrics,
        policy,
        schedule_jitter: Duration::from_secs(settings.scheduler.jitter_seconds),
        operations: Operations {
            amqp_url: settings.amqp.url.clone(),
            namespace: settings.amqp.namespace.clone(),
            operator_organization: settings.auth.operator_organization.clone(),
            latest: latest.clone(),
        },
        limits: limits.clone(),
        trusted_proxies,
    });

    let stop = CancellationToken::new();
    let hub = tokio::spawn(state.hub().clone().run(
        state.pool().clone(),
        Duration::from_millis(settings.api.events_poll_ms),
        state.metrics().clone(),
        stop.clone(),
    ));
    // Shutdown ends the event streams first, so that draining the other
    // requests is not held up by streams that would last as long as a job.
    let shutdown = {
        let streams_stop = state.streams_stop().clone();
        async move {
            shutdown.await;
            streams_stop.cancel();
        }
    };
    let relay = tokio::spawn(
        syncway_relay::Relay {
            pool,
            amqp_url: syncway_queue::with_heartbeat(
                &settings.amqp.url,
                settings.worker.heartbeat_seconds(),
            ),
            namespace: settings.amqp.namespace.clone(),
            wake: state.inner.relay_wake.clone(),
            ready: state.inner.broker_ready.clone(),
            metrics: relay_metrics,
            name: "syncway-api-relay".to_owned(),
        }
        .run(stop.clone()),
    );
    let refresher = tokio::spawn(
        ops::snapshot::Refresher {
            pool: state.pool().clone(),
            amqp_url: settings.amqp.url.clone(),
            namespace: settings.amqp.namespace.clone(),
            management_url: settings.amqp.management_url(),
            interval: Duration::from_millis(settings.metrics.snapshot_interval_ms),
            metrics: ops_metrics,
            latest,
        }
        .run(stop.clone()),
    );
    let metrics_server = serve.map(|(metrics_listener, registry)| {
        tokio::spawn(telemetry::serve(
            metrics_listener,
            telemetry::metrics_router(registry),
            stop.clone().cancelled_owned(),
        ))
    });

    let share = tokio::spawn(
        limits::share::Share {
            pool: state.pool().clone(),
            limits: limits.clone(),
            gauge: state.metrics().api_processes.clone(),
        }
        .run(stop.clone()),
    );
    let pruner = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            while stop.run_until_cancelled(every.tick()).await.is_some() {
                limits.prune();
            }
        }
    });

    tracing::info!(address = %listener.local_addr()?, "API listening");
    let request_timeout = Duration::from_secs(settings.api.request_timeout_seconds);
    let served = server::serve(
        listener,
        app(state, request_timeout),
        server::ServerSettings {
            header_timeout: Duration::from_secs(settings.api.header_timeout_seconds),
            max_connections: settings.api.max_connections,
            drain: request_timeout + Duration::from_secs(5),
        },
        shutdown,
    )
    .await;
    // Requests are drained; let the relay publish what they committed.
    stop.cancel();
    let _ = relay.await;
    let _ = refresher.await;
    let _ = share.await;
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    let _ = pruner.await;
    let _ = hub.await;
    served.context("serving HTTP")
}

/// Says once, at start, how many operator keys other organizations hold
/// (they act as member keys). Best effort and off the start's path: the API
/// starts while Postgres is away.
async fn warn_of_stray_operator_keys(pool: &syncway_store::Pool, operator_organization: &str) {
    let pool = pool.clone();
    let operator_organization = operator_organization.to_owned();
    tokio::spawn(async move {
        let counted = match pool.get().await {
            Ok(client) => {
                syncway_store::api_keys::stray_operator_keys(&client, &operator_organization).await
            }
            Err(error) => Err(error.into()),
        };
        match counted {
            Ok(0) => {}
            Ok(stray) => tracing::warn!(
                stray,
                operator_organization = %operator_organization,
                "operator keys of other organizations act as member keys only \
                 (SYNCWAY_AUTH__OPERATOR_ORGANIZATION names the operator's)"
            ),
            Err(error) => tracing::debug!(error = %error, "could not count stray operator keys"),
        }
    });
}
