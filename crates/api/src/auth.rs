//! API-key authentication, run before any routing-level validation.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, Result};

/// The organization the request's key belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Organization(pub Uuid);

/// Resolves `x-api-key` (header names are case-insensitive) to an
/// organization: 401 without a key, 403 for an unknown, revoked or expired one.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response> {
    let key = match request.headers().get("x-api-key") {
        None => return Err(ApiError::MissingKey),
        Some(value) => value.to_str().map_err(|_| ApiError::InvalidKey)?.trim(),
    };
    if key.is_empty() {
        return Err(ApiError::MissingKey);
    }
    let client = state.pool().get().await?;
    let organization = syncway_store::api_keys::find_organization(&client, key)
        .await?
        .ok_or(ApiError::InvalidKey)?;
    drop(client);
    request.extensions_mut().insert(Organization(organization));
    Ok(next.run(request).await)
}
