//! Routes, one module per resource, merged here. Health checks are public;
//! everything else sits behind API-key authentication (the run route
//! authenticates in its own statement: see [`crate::auth`]).

mod admin;
mod collections;
mod connections;
mod entities;
mod health;
mod jobs;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};

use crate::error::ApiError;
use crate::{AppState, auth};

pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .merge(jobs::router())
        .merge(collections::router())
        .merge(connections::router())
        .merge(entities::router())
        .merge(admin::router(state.clone()))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));
    // The run route authenticates in its own batched statement.
    let self_authenticating = jobs::run_router().route_layer(from_fn(auth::identify));
    Router::new()
        .merge(authenticated)
        .merge(self_authenticating)
        .merge(health::router())
        .fallback(|| async { ApiError::NotFound("Not Found".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}
