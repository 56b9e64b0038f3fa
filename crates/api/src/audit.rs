//! The audit log: every request that changes something (or tries to, with a
//! key syncway knows) is recorded once, with who, what, the outcome's
//! status, the request id and the client's address. Never a secret, a
//! credential or a body.
//!
//! A middleware on the keyed routes records the request after its handler
//! answered. Authentication leaves the key's owner in an [`AuditSlot`];
//! when it did not (an unknown, revoked or expired key, or the run route,
//! which authenticates in its own statement), the key is looked up by its
//! digest, live or not. The run route records its outcomes inside the
//! trigger statement itself ([`RecordedInStatement`]), so that the hot path
//! gains no round trip.

use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use syncway_model::KeyRole;
use syncway_store::api_keys;
use syncway_store::history::{self, AuditEntry};
use uuid::Uuid;

use crate::AppState;
use crate::auth::KeyDigest;
use crate::client_address::ClientAddress;
use crate::http_layers::REQUEST_ID;

/// Who made a request, as far as its key tells.
#[derive(Debug, Clone)]
pub struct Actor {
    pub organization: Uuid,
    pub key_id: Option<Uuid>,
    pub key_prefix: Option<String>,
    pub role: Option<KeyRole>,
}

/// Where authentication leaves the request's [`Actor`] for the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Option<Actor>>>);

impl AuditSlot {
    pub fn fill(&self, actor: Actor) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(actor);
    }

    fn take(&self) -> Option<Actor> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// On a response: the id of what the request created (its target).
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// On a response: the handler's statement recorded the request already.
#[derive(Debug, Clone, Copy)]
pub struct RecordedInStatement;

/// The request's id and client address, as the audit log records them.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    pub request_id: Option<String>,
    pub client_address: Option<String>,
}

impl RequestOrigin {
    fn from_parts(headers: &HeaderMap, extensions: &Extensions) -> Self {
        RequestOrigin {
            request_id: headers
                .get(REQUEST_ID)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            client_address: extensions
                .get::<ClientAddress>()
                .map(|ClientAddress(address)| address.to_string()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestOrigin::from_parts(&parts.headers, &parts.extensions))
    }
}

/// What a route does, for the log: (action, target type, the path
/// parameter naming the target).
fn action(
    method: &Method,
    route: &str,
) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    let found = match (method.as_str(), route) {
        ("POST", "/collections") => ("collection.create", "collection", None),
        ("POST", "/source-connections") => ("source_connection.create", "source_connection", None),
        ("PATCH", "/source-connections/{source_connection_id}") => (
            "source_connection.update",
            "source_connection",
            Some("source_connection_id"),
        ),
        ("DELETE", "/source-connections/{source_connection_id}") => (
            "source_connection.delete",
            "source_connection",
            Some("source_connection_id"),
        ),
        ("POST", "/source-connections/{source_connection_id}/run") => (
            "source_connection.run",
            "source_connection",
            Some("source_connection_id"),
        ),
        ("POST", "/source-connections/{source_connection_id}/jobs/{job_id}/cancel") => {
            ("sync_job.cancel", "sync_job", Some("job_id"))
        }
        ("POST", "/api-keys") => ("api_key.create", "api_key", None),
        ("DELETE", "/api-keys/{api_key_id}") => ("api_key.revoke", "api_key", Some("api_key_id")),
        ("POST", "/api-keys/{api_key_id}/rotate") => {
            ("api_key.rotate", "api_key", Some("api_key_id"))
        }
        ("POST", "/admin/dead-letters/redrive") => ("dead_letters.redrive", "dead_letters", None),
        ("PUT", "/admin/pauses/all") => ("deployment.pause", "deployment", None),
        ("DELETE", "/admin/pauses/all") => ("deployment.resume", "deployment", None),
        ("PUT", "/admin/pauses/organizations/{organization_id}") => (
            "organization.pause",
            "organization",
            Some("organization_id"),
        ),
        ("DELETE", "/admin/pauses/organizations/{organization_id}") => (
            "organization.resume",
            "organization",
            Some("organization_id"),
        ),
        ("PUT", "/pauses/organization") => ("organization.pause", "organization", None),
        ("DELETE", "/pauses/organization") => ("organization.resume", "organization", None),
        ("POST", "/jobs/bulk") | ("POST", "/admin/jobs/bulk") => {
            ("sync_job.bulk", "bulk_task", None)
        }
        ("POST", "/webhooks/subscriptions") => {
            ("webhook_subscription.create", "webhook_subscription", None)
        }
        ("PATCH", "/webhooks/subscriptions/{subscription_id}") => (
            "webhook_subscription.update",
            "webhook_subscription",
            Some("subscription_id"),
        ),
        ("DELETE", "/webhooks/subscriptions/{subscription_id}") => (
            "webhook_subscription.delete",
            "webhook_subscription",
            Some("subscription_id"),
        ),
        ("POST", "/webhooks/subscriptions/{subscription_id}/recover") => (
            "webhook_subscription.recover",
            "webhook_subscription",
            Some("subscription_id"),
        ),
        _ => return None,
    };
    Some(found)
}

/// The path segment standing where `route` names `param`.
fn path_param(route: &str, path: &str, param: &str) -> Option<String> {
    let wanted = format!("{{{param}}}");
    let at = route.split('/').position(|segment| segment == wanted)?;
    path.split('/').nth(at).map(str::to_owned)
}

/// Middleware on the keyed routes: records the requests that change
/// something.
pub async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let Some((action, target_type, param)) = route
        .as_deref()
        .and_then(|route| action(request.method(), route))
    else {
        return next.run(request).await;
    };
    let target = param
        .and_then(|param| path_param(route.as_deref().unwrap_or(""), request.uri().path(), param));
    let origin = RequestOrigin::from_parts(request.headers(), request.extensions());
    let digest = request
        .extensions()
        .get::<KeyDigest>()
        .map(|KeyDigest(digest)| digest.clone());
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    if response.extensions().get::<RecordedInStatement>().is_some() {
        return response;
    }
    let target = response
        .extensions()
        .get::<AuditTarget>()
        .map(|AuditTarget(id)| id.clone())
        .or(target);
    let status = i32::from(response.status().as_u16());
    let entry = AuditEntry {
        action: action.to_owned(),
        target_type: target_type.to_owned(),
        target_id: target,
        status,
        request_id: origin.request_id,
        client_address: origin.client_address,
        ..AuditEntry::default()
    };
    if let Err(error) = write(&state, slot.take(), digest, entry).await {
        tracing::error!(error = %error, action, status, "could not record a request in the audit log");
    }
    response
}

async fn write(
    state: &AppState,
    actor: Option<Actor>,
    digest: Option<Vec<u8>>,
    mut entry: AuditEntry,
) -> Result<(), syncway_store::StoreError> {
    let client = state.pool().get().await?;
    let actor = match (actor, digest) {
        (Some(actor), _) => actor,
        (None, Some(digest)) => match api_keys::identify(&client, &digest).await? {
            Some(key) => Actor {
                organization: key.organization_id,
                key_id: Some(key.id),
                key_prefix: Some(key.prefix),
                role: Some(KeyRole::from_db(&key.role)),
            },
            // A key nobody has: not a request of any organization's.
            None => return Ok(()),
        },
        (None, None) => return Ok(()),
    };
    entry.organization_id = actor.organization;
    entry.key_id = actor.key_id;
    entry.key_prefix = actor.key_prefix;
    entry.role = actor.role.map(|role| role.as_str().to_owned());
    history::record(&client, &entry).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_segment_where_the_route_names_it() {
        let route = "/source-connections/{source_connection_id}/jobs/{job_id}/cancel";
        let path = "/source-connections/abc/jobs/def/cancel";
        assert_eq!(path_param(route, path, "job_id").as_deref(), Some("def"));
        assert_eq!(
            path_param(route, path, "source_connection_id").as_deref(),
            Some("abc")
        );
        assert_eq!(path_param(route, path, "nothing"), None);
    }

    #[test]
    fn reads_are_not_audited() {
        assert!(action(&Method::GET, "/source-connections/{source_connection_id}").is_none());
        assert!(action(&Method::DELETE, "/api-keys/{api_key_id}").is_some());
    }
}
