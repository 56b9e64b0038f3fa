//! `/healthz` (the process is alive) and `/readyz` (Postgres and the broker
//! are reachable), both without a key.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, Result};
use crate::routes::table::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .get("/healthz", || async { Json(json!({"status": "ok"})) })
        .get("/readyz", ready)
        .get("/openapi.json", crate::openapi::serve)
}

async fn ready(State(state): State<AppState>) -> Result<Json<Value>> {
    if !syncway_store::ping(state.pool()).await {
        return Err(ApiError::NotReady("Postgres does not answer"));
    }
    if !state.broker_ready() {
        return Err(ApiError::NotReady(
            "the outbox relay is not connected to the broker",
        ));
    }
    Ok(Json(
        json!({"status": "ready", "postgres": "ok", "broker": "ok"}),
    ))
}
