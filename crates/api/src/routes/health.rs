//! `/healthz` (the process is alive) and `/readyz` (Postgres and the broker
//! are reachable), both without a key.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
}

async fn ready(State(state): State<AppState>) -> Result<Json<Value>> {
    if !syncway_store::ping(state.pool()).await {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "Postgres does not answer"
        )));
    }
    if !state.broker_ready() {
        return Err(ApiError::Unavailable(anyhow::anyhow!(
            "the outbox relay is not connected to the broker"
        )));
    }
    Ok(Json(
        json!({"status": "ready", "postgres": "ok", "broker": "ok"}),
    ))
}
