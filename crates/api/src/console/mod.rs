//! The console (CONTRACT.md §12): server-rendered pages under `/console`
//! for operators and tenants.
//!
//! The console holds no logic of its own about jobs, pauses or dead
//! letters: a page asks the JSON API for what it shows, and a button asks
//! it to act, through [`Console::call`], which runs the request through the
//! same routes, limits, authentication and audit log a client's request
//! takes, as the key the session was made with (its digest, never the key
//! itself). So a page shows exactly what the JSON routes give, and a
//! session can do exactly what its key can.

// A handler's error is a page too (an axum `Response`), returned early
// with `?`; boxing every one would only add noise.
#![allow(clippy::result_large_err)]

mod assets;
mod charts;
mod connections;
mod job;
mod jobs;
mod operations;
mod overview;
mod page;
mod records;
mod session;
mod steering;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tower::ServiceExt;

use crate::AppState;
use crate::auth::KeyDigest;
use crate::http_layers::REQUEST_ID;

pub use session::Signed;

/// What the console's handlers share: the process's state and the JSON
/// API's keyed routes, which the console calls in-process.
#[derive(Clone)]
pub struct Console {
    state: AppState,
    api: Router,
}

/// Largest JSON answer the console reads from the API.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Why a call to the API gave no answer to show.
#[derive(Debug)]
pub enum Failure {
    /// The session's key was revoked or expired: the session is over.
    KeyGone,
    /// The API answered with an error: its status and its `detail`.
    Api(StatusCode, String),
}

impl Console {
    /// Calls the JSON API as the session's key: `uri` with its query,
    /// `body` as JSON. The answer's JSON (null for an empty body).
    pub async fn call(
        &self,
        signed: &Signed,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let response = self.send(signed, method, uri, body).await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
            .await
            .map_err(|error| {
                Failure::Api(
                    StatusCode::BAD_GATEWAY,
                    format!("unreadable answer: {error}"),
                )
            })?;
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            Ok(json)
        } else {
            Err(Failure::Api(status, detail(&json)))
        }
    }

    /// Like [`Console::call`], the answer left as it is (an event stream).
    pub async fn send(
        &self,
        signed: &Signed,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<Response, Failure> {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(id) = &signed.request_id {
            request = request.header(REQUEST_ID, id);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(|error| {
            Failure::Api(StatusCode::BAD_REQUEST, format!("bad request: {error}"))
        })?;
        request
            .extensions_mut()
            .insert(KeyDigest(signed.key_hash.clone()));
        if let Some(client) = signed.client {
            request.extensions_mut().insert(client);
        }
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if response
            .extensions()
            .get::<crate::limits::AuthFailed>()
            .is_some()
        {
            session::end(&self.state, signed).await;
            return Err(Failure::KeyGone);
        }
        Ok(response)
    }
}

/// An error answer's `detail`: the message, or the first field error's.
fn detail(json: &Value) -> String {
    match json.get("detail") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(errors)) => errors
            .iter()
            .filter_map(|error| {
                let message = error.get("msg")?.as_str()?;
                let place = error
                    .get("loc")
                    .and_then(Value::as_array)
                    .and_then(|loc| loc.last())
                    .and_then(Value::as_str)
                    .unwrap_or("input");
                Some(format!("{place}: {message}"))
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => "the request failed".to_owned(),
    }
}

/// What a page handler returns: the page, or the page saying why not.
pub type Page = Result<Response, Response>;

/// The console's routes, under `/console`; `api` is the JSON API's keyed
/// routes, which the console calls.
pub fn router(state: AppState, api: Router, request_timeout: std::time::Duration) -> Router {
    let console = Console { state, api };
    // A job's event stream lives as long as the job: no time limit.
    let streams = Router::new().route(
        "/console/jobs/{connection_id}/{job_id}/events",
        get(job::events),
    );
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route("/console/assets/{name}", get(assets::serve))
        .route(
            "/console/sign-in",
            get(session::sign_in_form).post(session::sign_in),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/overview", get(overview::show))
        .route("/console/jobs", get(jobs::list))
        .route("/console/jobs/bulk", post(jobs::bulk_preview))
        .route("/console/jobs/bulk/start", post(jobs::bulk_start))
        .route("/console/tasks/{task_id}", get(jobs::task))
        .route("/console/jobs/{connection_id}/{job_id}", get(job::show))
        .route(
            "/console/jobs/{connection_id}/{job_id}/cancel",
            post(job::cancel),
        )
        .route("/console/connections", get(connections::list))
        .route(
            "/console/connections/{connection_id}/run",
            post(connections::run),
        )
        .route(
            "/console/connections/{connection_id}/schedule",
            post(connections::schedule),
        )
        .route("/console/workers", get(operations::workers))
        .route("/console/dead-letters", get(operations::dead_letters))
        .route("/console/dead-letters/redrive", post(operations::redrive))
        .route("/console/pauses", get(steering::list).post(steering::set))
        .route("/console/pauses/lift", post(steering::lift))
        .route("/console/audit", get(records::audit))
        .route("/console/webhooks", get(records::webhooks))
        .route_layer(axum::middleware::from_fn(move |request, next| {
            crate::http_layers::time_limit(request_timeout, request, next)
        }))
        .merge(streams)
        .layer(axum::middleware::from_fn(page::headers))
        .with_state(console)
}
