//! API-key authentication, run before any validation.
//!
//! Most routes resolve the key to an organization in a middleware
//! ([`authenticate`]). The run route instead authenticates inside its own
//! (batched) statement: [`identify`] only reads the key, and the handler
//! looks the key up on its own ([`organization`]) when validation fails, so
//! that a bad key is still answered before bad input.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, Result};

/// The organization the request's key belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Organization(pub Uuid);

/// The digest of the request's key, not yet checked.
#[derive(Debug, Clone)]
pub struct KeyDigest(pub Vec<u8>);

/// Reads `x-api-key` (header names are case-insensitive): 401 without a
/// key, 403 for one that cannot be a key.
fn key_digest(request: &Request) -> Result<Vec<u8>> {
    let key = match request.headers().get("x-api-key") {
        None => return Err(ApiError::MissingKey),
        Some(value) => value.to_str().map_err(|_| ApiError::InvalidKey)?.trim(),
    };
    if key.is_empty() {
        return Err(ApiError::MissingKey);
    }
    Ok(syncway_store::api_keys::digest(key))
}

/// Resolves the key to an organization: 401 without a key, 403 for an
/// unknown, revoked or expired one.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response> {
    let digest = key_digest(&request)?;
    let organization = organization(&state, &digest).await?;
    request.extensions_mut().insert(Organization(organization));
    Ok(next.run(request).await)
}

/// Only reads the key (401 without one); the handler authenticates it.
pub async fn identify(mut request: Request, next: Next) -> Result<Response> {
    let digest = key_digest(&request)?;
    request.extensions_mut().insert(KeyDigest(digest));
    Ok(next.run(request).await)
}

/// The organization of a live key (403 otherwise).
pub async fn organization(state: &AppState, digest: &[u8]) -> Result<Uuid> {
    let client = state.pool().get().await?;
    syncway_store::api_keys::find_organization_by_digest(&client, digest)
        .await?
        .ok_or(ApiError::InvalidKey)
}
