//! What happened (CONTRACT.md §9): a job's timeline and the audit log,
//! each read oldest first, a page at a time; `next` is the `after` of the
//! following page, null on the last one.

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use serde_json::{Value, json};
use syncway_model::KeyRole;
use syncway_store::history::{self, AuditEntry, AuditFilter};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Result};
use crate::extract::{PathParams, QueryParams, path_uuid};
use crate::routes::table::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .get(
            "/source-connections/{source_connection_id}/jobs/{job_id}/timeline",
            timeline,
        )
        .get("/audit-log", organization_audit_log)
        .get("/admin/audit-log", admin_audit_log)
}

/// The operator's view of any organization's job and its timeline.
pub fn admin_job_routes() -> Routes {
    Routes::new()
        .get("/admin/jobs/{job_id}", admin_job)
        .get("/admin/jobs/{job_id}/timeline", admin_timeline)
        .wrap(|router| router.route_layer(axum::middleware::from_fn(super::admin::operator_only)))
}

/// `GET /admin/jobs/{job_id}`
async fn admin_job(
    State(state): State<AppState>,
    params: PathParams,
) -> Result<Json<syncway_model::SourceConnectionJob>> {
    let job = path_uuid(&params, "job_id")?;
    let client = state.pool().get().await?;
    syncway_store::jobs::find_any(&client, job)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("sync job"))
}

/// `GET /admin/jobs/{job_id}/timeline?after=&limit=`
async fn admin_timeline(
    State(state): State<AppState>,
    params: PathParams,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let job = path_uuid(&params, "job_id")?;
    let (after, limit) = page(&QueryParams::parse(query.as_deref())?)?;
    let client = state.pool().get().await?;
    let items = history::timeline_of_any(&client, job, after, limit)
        .await?
        .ok_or_else(|| ApiError::not_found("sync job"))?;
    Ok(Json(timeline_json(items, limit)))
}

/// A page of a timeline as the API shows it.
fn timeline_json(items: Vec<history::TimelineItem>, limit: i64) -> Value {
    let positions: Vec<i64> = items.iter().map(|item| item.seq).collect();
    let items: Vec<Value> = items
        .into_iter()
        .map(|item| {
            json!({
                "at": item.at,
                "kind": item.kind,
                "attempt": item.attempt,
                "worker_id": item.worker_id,
                "message": item.message,
                "details": item.details,
            })
        })
        .collect();
    json!({"items": items, "next": next(&positions, limit)})
}

/// `after` and `limit`, as every page of history takes them.
fn page(query: &QueryParams) -> Result<(i64, i64)> {
    Ok((
        query.int("after", 0, 0, i64::MAX)?,
        query.int("limit", 100, 1, 1000)?,
    ))
}

/// `next`: the last item's position when the page is full.
fn next(positions: &[i64], limit: i64) -> Value {
    match positions.last() {
        Some(last) if i64::try_from(positions.len()).unwrap_or(i64::MAX) >= limit => {
            json!(last.to_string())
        }
        _ => Value::Null,
    }
}

/// `GET /source-connections/{id}/jobs/{job_id}/timeline?after=&limit=`
async fn timeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: PathParams,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let connection = path_uuid(&params, "source_connection_id")?;
    let job = path_uuid(&params, "job_id")?;
    let (after, limit) = page(&QueryParams::parse(query.as_deref())?)?;
    let client = state.pool().get().await?;
    let items = history::timeline(&client, caller.organization, connection, job, after, limit)
        .await?
        .ok_or_else(|| ApiError::not_found("sync job"))?;
    Ok(Json(timeline_json(items, limit)))
}

fn entry_json(entry: AuditEntry) -> Value {
    json!({
        "id": entry.id.to_string(),
        "at": entry.at,
        "organization_id": entry.organization_id,
        "key_id": entry.key_id,
        "key_prefix": entry.key_prefix,
        "role": entry.role,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "status": entry.status,
        "request_id": entry.request_id,
        "client_address": entry.client_address,
    })
}

async fn audit_log(
    state: &AppState,
    organization_id: Option<uuid::Uuid>,
    query: Option<&str>,
) -> Result<Json<Value>> {
    let query = QueryParams::parse(query)?;
    let (after, limit) = page(&query)?;
    let filter = AuditFilter {
        organization_id,
        after,
        limit,
        action: query.get("action").map(str::to_owned),
        target_id: query.get("target_id").map(str::to_owned),
    };
    let client = state.pool().get().await?;
    let entries = history::audit_log(&client, &filter).await?;
    let positions: Vec<i64> = entries.iter().map(|entry| entry.id).collect();
    let items: Vec<Value> = entries.into_iter().map(entry_json).collect();
    Ok(Json(
        json!({"items": items, "next": next(&positions, limit)}),
    ))
}

/// `GET /audit-log?after=&limit=&action=&target_id=`: the key's
/// organization's entries.
async fn organization_audit_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    audit_log(&state, Some(caller.organization), query.as_deref()).await
}

/// `GET /admin/audit-log?...`: everyone's (operator keys only).
async fn admin_audit_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    if caller.role != KeyRole::Operator {
        return Err(ApiError::Forbidden(
            "this route needs an operator key".into(),
        ));
    }
    audit_log(&state, None, query.as_deref()).await
}
