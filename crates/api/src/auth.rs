//! API-key authentication, run before any validation.
//!
//! Most routes resolve the key to its owner in a middleware
//! ([`authenticate`]). The run route instead authenticates inside its own
//! (batched) statement: [`identify`] only reads the key, and the handler
//! looks the key up on its own ([`organization`]) when validation fails, so
//! that a bad key is still answered before bad input.
//!
//! No process keeps a key it has seen: every request reads the key's row,
//! so a revoked key is refused by every API process at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use syncway_model::KeyRole;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, Result};

/// The organization the request's key belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Organization(pub Uuid);

/// The request's key: its organization and its role.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub organization: Uuid,
    /// The key's id (what the audit log and a job's timeline name).
    pub key_id: Uuid,
    /// The role the key acts with (an operator key outside the operator
    /// organization acts as a member key).
    pub role: KeyRole,
    pub in_operator_organization: bool,
}

/// The digest of the request's key, not yet checked.
#[derive(Debug, Clone)]
pub struct KeyDigest(pub Vec<u8>);

/// Reads `x-api-key` (header names are case-insensitive): 401 without a
/// key, 403 for one that cannot be a key. Digested once per request: the
/// limits' guard, which runs first, leaves the digest in the request.
pub(crate) fn key_digest(request: &Request) -> Result<Vec<u8>> {
    if let Some(KeyDigest(digest)) = request.extensions().get::<KeyDigest>() {
        return Ok(digest.clone());
    }
    let key = match request.headers().get("x-api-key") {
        None => return Err(ApiError::MissingKey),
        Some(value) => value.to_str().map_err(|_| ApiError::InvalidKey)?.trim(),
    };
    if key.is_empty() {
        return Err(ApiError::MissingKey);
    }
    Ok(syncway_store::api_keys::digest(key))
}

/// Resolves the key to its owner: 401 without a key, 403 for an unknown,
/// revoked or expired one.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response> {
    let digest = key_digest(&request)?;
    let client = state.pool().get().await?;
    let owner =
        syncway_store::api_keys::find_by_digest(&client, &digest, state.operator_organization())
            .await?
            .ok_or(ApiError::InvalidKey)?;
    drop(client);
    state.key_usage().used(&state, digest);
    request
        .extensions_mut()
        .insert(Organization(owner.organization_id));
    if let Some(slot) = request.extensions().get::<crate::audit::AuditSlot>() {
        slot.fill(crate::audit::Actor {
            organization: owner.organization_id,
            key_id: Some(owner.key_id),
            key_prefix: Some(owner.key_prefix.clone()),
            role: Some(owner.role),
        });
    }
    request.extensions_mut().insert(Caller {
        key_id: owner.key_id,
        organization: owner.organization_id,
        role: owner.role,
        in_operator_organization: owner.in_operator_organization,
    });
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

/// How often one process records that a key was used.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Keeps `last_used_at` coarse: this process writes a key's at most once a
/// minute, off the request's path.
#[derive(Default)]
pub struct KeyUsage {
    touched: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl KeyUsage {
    /// Records a use of the key with this digest (a live key's).
    pub fn used(&self, state: &AppState, digest: Vec<u8>) {
        let now = Instant::now();
        {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            if touched
                .get(&digest)
                .is_some_and(|at| now.duration_since(*at) < TOUCH_EVERY)
            {
                return;
            }
            if touched.len() > 100_000 {
                touched.retain(|_, at| now.duration_since(*at) < TOUCH_EVERY);
            }
            touched.insert(digest.clone(), now);
        }
        let pool = state.pool().clone();
        tokio::spawn(async move {
            let touched = match pool.get().await {
                Ok(client) => syncway_store::api_keys::touch(&client, &digest).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = touched {
                tracing::debug!(error = %error, "could not record a key's last use");
            }
        });
    }
}
