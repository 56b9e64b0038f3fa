//! Pauses (CONTRACT.md §11): the operator pauses the deployment or any
//! organization (`/admin/pauses/...`), an organization's own key its own
//! organization (`/pauses/organization`); each lifts only its own pause. While a pause holds, triggers
//! and ticks are still accepted and their jobs stay pending (held, with a
//! waiting reason); nothing of its scope is claimed; running jobs finish,
//! or with `?cancel_running=true` are cancelled. A resume lets the held
//! jobs go, oldest first, fairly across organizations.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::middleware::from_fn;
use serde::Deserialize;
use serde_json::{Value, json};
use syncway_store::pauses::{self, Pause};
use uuid::Uuid;

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::Caller;
use crate::error::{ApiError, Result};
use crate::extract::{PathParams, QueryParams, json_body, path_uuid};
use crate::routes::admin::operator_only;
use crate::routes::table::Routes;

/// Jobs a resume lets go, and a pause cancels, per transaction.
const BATCH: i64 = 1000;
/// The longest reason kept.
const MAX_REASON: usize = 1000;

pub fn routes() -> Routes {
    let operator = Routes::new()
        .get("/admin/pauses", list_all)
        .put("/admin/pauses/all", pause_all)
        .delete("/admin/pauses/all", resume_all)
        .put("/admin/pauses/organizations/{organization_id}", pause_one)
        .delete("/admin/pauses/organizations/{organization_id}", resume_one)
        .wrap(|router| router.route_layer(from_fn(operator_only)));
    Routes::new()
        .get("/pauses", list_own)
        .put("/pauses/organization", pause_own)
        .delete("/pauses/organization", resume_own)
        .merge(operator)
}

pub(crate) fn pause_json(pause: &Pause) -> Value {
    json!({
        "scope": pause.scope,
        "by_operator": pause.by_operator,
        "organization_id": pause.organization_id,
        "reason": pause.reason,
        "created_at": pause.created_at,
        "created_by_key_prefix": pause.created_by_key_prefix,
    })
}

#[derive(Debug, Default, Deserialize)]
struct PauseBody {
    #[serde(default)]
    reason: Option<String>,
}

/// The reason of a PUT's body; the body may be left out.
fn reason(body: std::result::Result<Bytes, BytesRejection>) -> Result<String> {
    let empty = body.as_ref().is_ok_and(|bytes| bytes.is_empty());
    let body: PauseBody = if empty {
        PauseBody::default()
    } else {
        json_body(body)?
    };
    let reason = body.reason.unwrap_or_default().trim().to_owned();
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::invalid(
            &["body", "reason"],
            format!("String should have at most {MAX_REASON} characters"),
            "string_too_long",
        ));
    }
    Ok(reason)
}

async fn pause(
    state: &AppState,
    caller: &Caller,
    organization: Option<Uuid>,
    by_operator: bool,
    query: Option<&str>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let query = QueryParams::parse(query)?;
    let cancel_running = query.bool("cancel_running", false)?;
    let reason = reason(body)?;
    let mut client = state.pool().get().await?;
    if let Some(organization) = organization {
        let found = syncway_store::organizations::find(&client, &organization.to_string()).await?;
        if found.is_none() {
            return Err(ApiError::not_found("organization"));
        }
    }
    let paused = pauses::pause(
        &client,
        organization,
        by_operator,
        &reason,
        Some(caller.key_id),
    )
    .await?;
    tracing::info!(scope = %paused.scope, organization = ?organization, cancel_running, "paused");
    if cancel_running {
        let mut cancelled = 0;
        loop {
            let transaction = client.transaction().await?;
            let running = pauses::running_jobs(&transaction, organization, BATCH).await?;
            let ids = syncway_store::jobs::cancel_many(
                &transaction,
                &running,
                organization,
                Some(caller.key_id),
            )
            .await?;
            transaction.commit().await?;
            cancelled += ids.len();
            if ids.is_empty() {
                break;
            }
            state.wake_relay();
        }
        tracing::info!(cancelled, "a pause cancelled running jobs");
    }
    Ok(Json(pause_json(&paused)))
}

async fn resume(
    state: &AppState,
    organization: Option<Uuid>,
    by_operator: bool,
) -> Result<Json<Value>> {
    let mut client = state.pool().get().await?;
    let Some(resumed) = pauses::resume(&client, organization, by_operator).await? else {
        return Err(ApiError::not_found("pause"));
    };
    // Let the held jobs go now (the reapers would, within their interval).
    let mut released = 0;
    loop {
        let ids = syncway_store::jobs::release_unpaused(&mut client, BATCH).await?;
        released += ids.len();
        if ids.is_empty() {
            break;
        }
        state.wake_relay();
    }
    tracing::info!(scope = %resumed.scope, organization = ?organization, released, "resumed");
    Ok(Json(pause_json(&resumed)))
}

async fn list(state: &AppState, organization: Option<Uuid>) -> Result<Json<Value>> {
    let client = state.pool().get().await?;
    let all = pauses::list(&client, organization).await?;
    Ok(Json(Value::Array(all.iter().map(pause_json).collect())))
}

async fn list_all(State(state): State<AppState>) -> Result<Json<Value>> {
    list(&state, None).await
}

async fn list_own(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    list(&state, Some(caller.organization)).await
}

async fn pause_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    pause(&state, &caller, None, true, query.as_deref(), body).await
}

async fn resume_all(State(state): State<AppState>) -> Result<Json<Value>> {
    resume(&state, None, true).await
}

async fn pause_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: PathParams,
    RawQuery(query): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let organization = path_uuid(&params, "organization_id")?;
    pause(
        &state,
        &caller,
        Some(organization),
        true,
        query.as_deref(),
        body,
    )
    .await
}

async fn resume_one(State(state): State<AppState>, params: PathParams) -> Result<Json<Value>> {
    resume(&state, Some(path_uuid(&params, "organization_id")?), true).await
}

async fn pause_own(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(Extension<AuditTarget>, Json<Value>)> {
    let paused = pause(
        &state,
        &caller,
        Some(caller.organization),
        false,
        query.as_deref(),
        body,
    )
    .await?;
    Ok((
        Extension(AuditTarget(caller.organization.to_string())),
        paused,
    ))
}

async fn resume_own(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<(Extension<AuditTarget>, Json<Value>)> {
    let resumed = resume(&state, Some(caller.organization), false).await?;
    Ok((
        Extension(AuditTarget(caller.organization.to_string())),
        resumed,
    ))
}
