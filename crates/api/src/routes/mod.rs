//! Routes, one module per resource, merged here. Health checks and the
//! OpenAPI description are public; everything else sits behind the
//! limits and API-key authentication (the run route authenticates in its
//! own statement: see [`crate::auth`]). Every route but event streams has
//! the request timeout.

mod admin;
mod api_keys;
mod collections;
mod connections;
mod entities;
mod events;
mod health;
mod history;
mod jobs;
mod pauses;
mod search;
mod table;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};

use crate::error::ApiError;
use crate::{AppState, audit, auth, http_layers, limits};
use table::Routes;

/// The groups: authenticated by the middleware, authenticating themselves,
/// event streams (authenticated, without the request timeout), public.
fn groups() -> (Routes, Routes, Routes, Routes) {
    let authenticated = Routes::new()
        .merge(jobs::routes())
        .merge(collections::routes())
        .merge(connections::routes())
        .merge(entities::routes())
        .merge(api_keys::routes())
        .merge(history::routes())
        .merge(history::admin_job_routes())
        .merge(webhooks::routes())
        .merge(pauses::routes())
        .merge(search::routes())
        .merge(admin::routes());
    (
        authenticated,
        jobs::run_routes(),
        events::routes(),
        health::routes(),
    )
}

/// Every `(method, path template)` the API serves.
pub fn table() -> Vec<(Method, &'static str)> {
    let (authenticated, self_authenticating, streams, public) = groups();
    let mut table = Vec::new();
    for routes in [authenticated, self_authenticating, streams, public] {
        table.extend(routes.into_parts().1);
    }
    table
}

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let (authenticated, self_authenticating, streams, public) = groups();
    let authenticated = authenticated
        .into_parts()
        .0
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));
    let self_authenticating = self_authenticating
        .into_parts()
        .0
        .route_layer(from_fn(auth::identify));
    let keyed = Router::new()
        .merge(authenticated)
        .merge(self_authenticating)
        .route_layer(from_fn_with_state(state.clone(), audit::record))
        .route_layer(from_fn_with_state(state.clone(), limits::guard));
    // Event streams live as long as their job: no request timeout.
    let streams = streams
        .into_parts()
        .0
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate))
        .route_layer(from_fn_with_state(state.clone(), limits::guard));
    // The console calls the keyed routes and the streams in-process.
    let for_console = Router::new()
        .merge(keyed.clone())
        .merge(streams.clone())
        .with_state(state.clone());
    let console = crate::console::router(state.clone(), for_console, request_timeout);
    Router::new()
        .merge(keyed)
        .merge(public.into_parts().0)
        .route_layer(from_fn(move |request, next| {
            http_layers::time_limit(request_timeout, request, next)
        }))
        .merge(streams)
        .fallback(|| async { ApiError::NotFound("Not Found".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .merge(console)
}
