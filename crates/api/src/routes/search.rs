//! Job search and bulk actions (CONTRACT.md §11). `GET /jobs` and `POST
//! /jobs/bulk` see the key's organization; `/admin/jobs...` every
//! organization (operator keys only). A bulk action stores what its filter
//! matched when submitted and is worked through in batches
//! ([`syncway_store::tasks`]) by a task of this process; should the
//! process die, a worker's reaper takes the rest over.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use syncway_store::jobs::{JobFilter, Keyset};
use syncway_store::tasks::{self, Action, Task};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{AuditTarget, RecordedInStatement};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError, Result};
use crate::extract::{PathParams, QueryParams, json_body, path_uuid};
use crate::routes::admin::operator_only;
use crate::routes::table::Routes;

/// Items a task acts on per transaction.
pub const TASK_BATCH: i64 = 200;

pub fn routes() -> Routes {
    let operator = Routes::new()
        .get("/admin/jobs", search_all)
        .post("/admin/jobs/bulk", bulk_all)
        .get("/admin/tasks/{task_id}", task_any)
        .wrap(|router| router.route_layer(from_fn(operator_only)));
    Routes::new()
        .get("/jobs", search_own)
        .post("/jobs/bulk", bulk_own)
        .get("/tasks/{task_id}", task_own)
        .merge(operator)
}

/// A time as RFC 3339, or without an offset (UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// A filter's fields as given (query parameters or a body's `filter`), read
/// into a [`JobFilter`]; every wrong one is named at `place`.
fn filter(
    given: &BTreeMap<String, String>,
    place: &[&str],
    operator: bool,
) -> std::result::Result<JobFilter, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut filter = JobFilter::default();
    let mut error = |name: &str, msg: &str, kind: &str| {
        let mut loc = place.to_vec();
        loc.push(name);
        errors.push(FieldError::new(&loc, msg, kind));
    };
    for (name, value) in given {
        match name.as_str() {
            "status" => match value.parse() {
                Ok(status) => filter.status = Some(status),
                Err(_) => error(
                    name,
                    "Input should be 'pending', 'running', 'completed', 'failed', 'cancelling' or 'cancelled'",
                    "enum",
                ),
            },
            "trigger" => match value.parse() {
                Ok(trigger) => filter.trigger = Some(trigger),
                Err(_) => error(name, "Input should be 'api' or 'schedule'", "enum"),
            },
            "source_connection_id" | "organization_id" => match Uuid::parse_str(value) {
                Ok(id) if name == "source_connection_id" => filter.source_connection_id = Some(id),
                Ok(id) if operator => filter.organization_id = Some(id),
                Ok(_) => error(name, "Extra inputs are not permitted", "extra_forbidden"),
                Err(_) => error(name, "Input should be a valid UUID", "uuid_parsing"),
            },
            "short_name" | "error_category" => {
                let length = value.chars().count();
                if length == 0 || length > 100 {
                    error(
                        name,
                        "String should have 1 to 100 characters",
                        "string_too_long",
                    );
                } else if name == "short_name" {
                    filter.short_name = Some(value.to_owned());
                } else {
                    filter.error_category = Some(value.to_owned());
                }
            }
            "created_after" | "created_before" => match parse_time(value) {
                Some(at) if name == "created_after" => filter.created_after = Some(at),
                Some(at) => filter.created_before = Some(at),
                None => error(name, "Input should be a valid datetime", "datetime_parsing"),
            },
            _ => error(name, "Extra inputs are not permitted", "extra_forbidden"),
        }
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(errors)
    }
}

/// A page's keyset as the API shows it: `<microseconds>_<id>`.
fn keyset_token(keyset: Keyset) -> String {
    format!("{}_{}", keyset.created_at.timestamp_micros(), keyset.id)
}

fn parse_keyset(token: &str) -> Option<Keyset> {
    let (micros, id) = token.split_once('_')?;
    Some(Keyset {
        created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: Uuid::parse_str(id).ok()?,
    })
}

async fn search(
    state: &AppState,
    organization: Option<Uuid>,
    query: Option<&str>,
) -> Result<Json<Value>> {
    let query = QueryParams::parse(query)?;
    let limit = query.int("limit", 100, 1, 1000)?;
    let after = match query.get("after") {
        None => None,
        Some(token) => Some(parse_keyset(token).ok_or_else(|| {
            ApiError::invalid(
                &["query", "after"],
                "Input should be the `next` of an earlier page",
                "value_error",
            )
        })?),
    };
    let given: BTreeMap<String, String> = query
        .pairs()
        .filter(|(name, _)| !matches!(*name, "limit" | "after"))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let mut filter =
        filter(&given, &["query"], organization.is_none()).map_err(ApiError::Validation)?;
    if organization.is_some() {
        filter.organization_id = organization;
    }
    let client = state.pool().get().await?;
    let (jobs, next) = syncway_store::jobs::search(&client, &filter, after, limit).await?;
    Ok(Json(json!({
        "items": jobs,
        "next": next.map(keyset_token),
    })))
}

async fn search_own(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    search(&state, Some(caller.organization), query.as_deref()).await
}

async fn search_all(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    search(&state, None, query.as_deref()).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    action: String,
    #[serde(default)]
    filter: BTreeMap<String, Value>,
    #[serde(default)]
    dry_run: bool,
}

async fn bulk(
    state: &AppState,
    caller: &Caller,
    organization: Option<Uuid>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body: BulkBody = json_body(body)?;
    let action = Action::parse(&body.action).ok_or_else(|| {
        ApiError::invalid(
            &["body", "action"],
            "Input should be 'cancel', 'retry' or 'run'",
            "enum",
        )
    })?;
    let mut errors = Vec::new();
    let mut given = BTreeMap::new();
    for (name, value) in body.filter {
        match value {
            Value::Null => {}
            Value::String(text) => {
                given.insert(name, text);
            }
            _ => errors.push(FieldError::new(
                &["body", "filter", &name],
                "Input should be a valid string",
                "string_type",
            )),
        }
    }
    let mut filter = match filter(&given, &["body", "filter"], organization.is_none()) {
        Ok(filter) if errors.is_empty() => filter,
        Ok(_) => return Err(ApiError::Validation(errors)),
        Err(more) => return Err(ApiError::Validation([errors, more].concat())),
    };
    if organization.is_some() {
        filter.organization_id = organization;
    }
    let client = state.pool().get().await?;
    if body.dry_run {
        // Changes nothing: no audit entry.
        let matched = tasks::count(&client, action, &filter).await?;
        let mut response = Json(json!({ "matched": matched })).into_response();
        response.extensions_mut().insert(RecordedInStatement);
        return Ok(response);
    }
    let (task_id, matched) = tasks::submit(&client, organization, action, &filter).await?;
    tracing::info!(%task_id, action = action.as_str(), matched, "bulk task submitted");
    spawn_task(state.clone(), task_id, Some(caller.key_id));
    Ok((
        StatusCode::ACCEPTED,
        Extension(AuditTarget(task_id.to_string())),
        Json(json!({ "task_id": task_id, "matched": matched })),
    )
        .into_response())
}

/// Works a task through, a batch at a time, until it is done.
pub fn spawn_task(state: AppState, task_id: Uuid, key_id: Option<Uuid>) {
    tokio::spawn(async move {
        loop {
            let worked = async {
                let mut client = state.pool().get().await?;
                tasks::work(&mut client, task_id, TASK_BATCH, key_id).await
            }
            .await;
            match worked {
                Ok(true) => state.wake_relay(),
                Ok(false) => {
                    state.wake_relay();
                    tracing::info!(%task_id, "bulk task done");
                    break;
                }
                Err(error) => {
                    // A worker's reaper takes it over once it is quiet.
                    tracing::error!(%task_id, error = %format!("{:#}", anyhow::Error::from(error)), "bulk task stopped; a reaper will take it over");
                    break;
                }
            }
        }
    });
}

async fn bulk_own(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    bulk(&state, &caller, Some(caller.organization), body).await
}

async fn bulk_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    bulk(&state, &caller, None, body).await
}

fn task_json(task: &Task) -> Value {
    json!({
        "id": task.id,
        "action": task.action,
        "status": task.status,
        "matched": task.matched,
        "done": task.done,
        "failed": task.failed,
        "created_at": task.created_at,
        "finished_at": task.finished_at,
    })
}

async fn task(state: &AppState, id: Uuid, organization: Option<Uuid>) -> Result<Json<Value>> {
    let client = state.pool().get().await?;
    match tasks::get(&client, id, organization).await? {
        Some(task) => Ok(Json(task_json(&task))),
        None => Err(ApiError::not_found("task")),
    }
}

async fn task_own(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: PathParams,
) -> Result<Json<Value>> {
    task(
        &state,
        path_uuid(&params, "task_id")?,
        Some(caller.organization),
    )
    .await
}

async fn task_any(State(state): State<AppState>, params: PathParams) -> Result<Json<Value>> {
    task(&state, path_uuid(&params, "task_id")?, None).await
}
