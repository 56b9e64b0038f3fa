//! An organization's API keys (CONTRACT.md §7): make, list, revoke, rotate.
//! Any key of the organization may manage its member keys; only an
//! operator key may make, rotate or revoke operator keys.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use syncway_model::KeyRole;
use syncway_store::api_keys::{self, ApiKey, NewKey, Rotated};
use uuid::Uuid;

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::Caller;
use crate::error::{ApiError, Result};
use crate::extract::{PathParams, integer, json_body, non_null, path_uuid};
use crate::routes::collections::valid_name;
use crate::routes::table::Routes;

pub fn routes() -> Routes {
    Routes::new()
        .get("/api-keys", list)
        .post("/api-keys", create)
        .delete("/api-keys/{api_key_id}", revoke)
        .post("/api-keys/{api_key_id}/rotate", rotate)
}

/// Longest lifetime a key may be given (about 100 years).
const MAX_EXPIRES_IN_DAYS: i64 = 36_500;
/// Longest grace an old key may keep after a rotation (a year).
const MAX_GRACE_SECONDS: i64 = 365 * 86_400;
const DEFAULT_GRACE_SECONDS: i64 = 86_400;

/// A key as its owner sees it; `key` only when it was just made.
#[derive(Debug, Serialize)]
pub struct ApiKeyBody {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub prefix: String,
    pub role: KeyRole,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyBody {
    fn new(key: ApiKey, secret: Option<String>) -> Self {
        ApiKeyBody {
            id: key.id,
            name: key.name,
            key: secret,
            prefix: key.prefix,
            role: key.role,
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default, deserialize_with = "non_null")]
    name: Option<String>,
    #[serde(default, deserialize_with = "integer")]
    expires_in_days: Option<i64>,
    #[serde(default, deserialize_with = "non_null")]
    role: Option<KeyRole>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    #[serde(default, deserialize_with = "integer")]
    grace_seconds: Option<i64>,
}

/// An empty body means "all defaults" for these two routes.
fn optional_body<T: Default + serde::de::DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<T> {
    match &body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
        _ => json_body(body),
    }
}

fn operator_needed() -> ApiError {
    ApiError::Forbidden("only an operator key may manage operator keys".into())
}

/// `POST /api-keys`
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(Extension<AuditTarget>, Json<ApiKeyBody>)> {
    let request: CreateKey = optional_body(body)?;
    let name = match &request.name {
        Some(name) => valid_name(name)?,
        None => "key".to_owned(),
    };
    let expires_at = match request.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_EXPIRES_IN_DAYS).contains(&days) => {
            Some(Utc::now() + chrono::Duration::days(days))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                &["body", "expires_in_days"],
                format!("expires_in_days must be 1 to {MAX_EXPIRES_IN_DAYS}"),
                "less_than_equal",
            ));
        }
    };
    let role = request.role.unwrap_or(KeyRole::Member);
    if role == KeyRole::Operator && caller.role != KeyRole::Operator {
        return Err(operator_needed());
    }

    let client = state.pool().get().await?;
    let new = NewKey {
        organization_id: caller.organization,
        name: &name,
        role,
        expires_at,
    };
    let (key, secret) = api_keys::create(&client, &new).await?;
    Ok((
        Extension(AuditTarget(key.id.to_string())),
        Json(ApiKeyBody::new(key, Some(secret))),
    ))
}

/// `GET /api-keys`
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<ApiKeyBody>>> {
    let client = state.pool().get().await?;
    let keys = api_keys::list(&client, caller.organization).await?;
    Ok(Json(
        keys.into_iter()
            .map(|key| ApiKeyBody::new(key, None))
            .collect(),
    ))
}

/// The organization's key named in the path, checked against the caller's
/// role.
async fn target(
    client: &deadpool_postgres::Object,
    caller: &Caller,
    params: &PathParams,
) -> Result<Uuid> {
    let id = path_uuid(params, "api_key_id")?;
    let key = api_keys::find(client, caller.organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    // Operator keys of an organization other than the operator's act as
    // member keys: its members may revoke or rotate them.
    if key.role == KeyRole::Operator
        && caller.role != KeyRole::Operator
        && caller.in_operator_organization
    {
        return Err(operator_needed());
    }
    Ok(id)
}

/// `DELETE /api-keys/{id}`: revoked at once, in every API process (none
/// keeps a key it has seen).
async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: PathParams,
) -> Result<Json<ApiKeyBody>> {
    let client = state.pool().get().await?;
    let id = target(&client, &caller, &params).await?;
    api_keys::revoke_by_id(&client, caller.organization, id)
        .await?
        .map(|key| Json(ApiKeyBody::new(key, None)))
        .ok_or_else(|| ApiError::not_found("API key"))
}

/// `POST /api-keys/{id}/rotate` `{grace_seconds?}`
async fn rotate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: PathParams,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<ApiKeyBody>> {
    let request: RotateKey = optional_body(body)?;
    let mut client = state.pool().get().await?;
    let id = target(&client, &caller, &params).await?;
    let grace = match request.grace_seconds {
        None => DEFAULT_GRACE_SECONDS,
        Some(seconds) if (0..=MAX_GRACE_SECONDS).contains(&seconds) => seconds,
        Some(_) => {
            return Err(ApiError::invalid(
                &["body", "grace_seconds"],
                format!("grace_seconds must be 0 to {MAX_GRACE_SECONDS}"),
                "less_than_equal",
            ));
        }
    };
    match api_keys::rotate(&mut client, caller.organization, id, grace).await? {
        Rotated::Done(key, secret) => Ok(Json(ApiKeyBody::new(key, Some(secret)))),
        Rotated::Missing => Err(ApiError::not_found("API key")),
        Rotated::Expired => Err(ApiError::Conflict(
            "this API key has expired; make a new one instead".into(),
        )),
    }
}
