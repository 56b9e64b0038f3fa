//! The operator's routes (CONTRACT.md §6), one group behind one check
//! ([`operator_only`]): the deployment's queue, job and worker figures, and
//! the dead letters (peek, redrive).

use axum::Json;
use axum::extract::{Extension, RawQuery, Request, State};
use axum::middleware::{Next, from_fn};
use axum::response::Response;

use super::table::Routes;
use serde_json::{Value, json};
use syncway_queue::Broker;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Result};
use crate::extract::QueryParams;
use syncway_model::KeyRole;

pub fn routes() -> Routes {
    Routes::new()
        .get("/admin/queue", queue)
        .get("/admin/dead-letters", dead_letters)
        .post("/admin/dead-letters/redrive", redrive)
        .wrap(|router| router.route_layer(from_fn(operator_only)))
}

/// 403 for any key but an operator's (the bootstrap key, or a key made
/// with the operator role).
pub(crate) async fn operator_only(
    Extension(caller): Extension<Caller>,
    request: Request,
    next: Next,
) -> Result<Response> {
    if caller.role != KeyRole::Operator {
        return Err(ApiError::Forbidden(
            "this route needs an operator key".into(),
        ));
    }
    Ok(next.run(request).await)
}

async fn broker(state: &AppState) -> Result<Broker> {
    Broker::connect(state.amqp_url(), state.namespace(), "syncway-admin")
        .await
        .map_err(|error| ApiError::Unavailable(error.into()))
}

async fn queue(State(state): State<AppState>) -> Result<Json<Value>> {
    let figures = state.ops_latest().read().await.clone().unwrap_or_default();
    let client = state.pool().get().await?;
    let workers = syncway_store::ops::workers(&client).await?;
    let jobs_queue = figures.jobs_queue().cloned().unwrap_or_default();
    let count = |status: &str| figures.jobs.get(status).copied().unwrap_or(0);
    Ok(Json(json!({
        "queue": {
            "name": jobs_queue.name,
            "ready": jobs_queue.ready,
            "unacked": jobs_queue.unacked,
            "consumers": jobs_queue.consumers,
        },
        "manual": {
            "ready": figures.manual_queue().and_then(|q| q.ready),
            "unacked": figures.manual_queue().and_then(|q| q.unacked),
        },
        "retry": {"ready": figures.retry_ready()},
        "dead_letter": figures.dead_letters().and_then(|q| q.ready).unwrap_or(0),
        "outbox_pending": figures.outbox_pending,
        "jobs": {
            "pending": count("pending"), "running": count("running"),
            "cancelling": count("cancelling"), "completed": count("completed"),
            "failed": count("failed"), "cancelled": count("cancelled"),
        },
        "oldest_pending_age_seconds": figures.oldest_pending_age_seconds,
        "workers": workers.iter().filter(|w| w.alive).map(|w| json!({
            "id": w.id, "hostname": w.hostname, "version": w.version,
            "started_at": w.started_at, "last_seen": w.last_seen,
            "concurrency": w.concurrency, "jobs_in_flight": w.jobs_in_flight,
        })).collect::<Vec<_>>(),
        "workers_gone": workers.iter().filter(|w| !w.alive).map(|w| json!({
            "id": w.id, "hostname": w.hostname, "last_seen": w.last_seen,
        })).collect::<Vec<_>>(),
    })))
}

async fn dead_letters(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let query = QueryParams::parse(query.as_deref())?;
    let limit = query.int("limit", 100, 1, 1000)?;
    let broker = broker(&state).await?;
    let dead = broker.topology().dead_queue();
    let total = broker
        .queue_stats(&dead)
        .await
        .map_err(|error| ApiError::Unavailable(error.into()))?
        .map_or(0, |stats| stats.ready);
    let letters = broker
        .peek_dead_letters(usize::try_from(limit).unwrap_or(100))
        .await
        .map_err(|error| ApiError::Unavailable(error.into()))?;
    broker.close().await;
    Ok(Json(json!({
        "items": letters.iter().map(|l| json!({
            "body": l.body, "reason": l.reason, "dead_lettered_at": l.dead_lettered_at,
        })).collect::<Vec<_>>(),
        "total": total,
    })))
}

async fn redrive(State(state): State<AppState>) -> Result<Json<Value>> {
    let broker = broker(&state).await?;
    let moved = broker
        .redrive_dead_letters()
        .await
        .map_err(|error| ApiError::Unavailable(error.into()));
    broker.close().await;
    let moved = moved?;
    tracing::info!(
        redriven = moved,
        "dead letters moved back to the jobs queue"
    );
    Ok(Json(json!({ "redriven": moved })))
}
