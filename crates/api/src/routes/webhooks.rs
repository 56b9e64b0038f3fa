//! Webhooks (CONTRACT.md §10), Airweave's paths and bodies: subscriptions,
//! their recovery, and the messages with their attempts. Everything is
//! the key's organization's; another's subscription or message is 404.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use syncway_store::webhooks::messages;
use syncway_store::webhooks::subscriptions::{self, Changes, NewSubscription};
use syncway_webhooks::signature::Secret;
use uuid::Uuid;

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::Organization;
use crate::error::{ApiError, Result};
use crate::extract::{PathParams, QueryParams, json_body, non_null, path_uuid};
use crate::routes::collections::valid_description;
use crate::routes::table::Routes;
use crate::webhook_wire::{
    AttemptBody, MessageBody, RecoveryBody, SubscriptionBody, SubscriptionDetail,
};

const SUBSCRIPTIONS: &str = "/webhooks/subscriptions";
const ONE: &str = "/webhooks/subscriptions/{subscription_id}";

/// Attempts shown with a subscription.
const RECENT_ATTEMPTS: i64 = 50;

pub fn routes() -> Routes {
    Routes::new()
        .get(SUBSCRIPTIONS, list)
        .post(SUBSCRIPTIONS, create)
        .get(ONE, find)
        .patch(ONE, update)
        .delete(ONE, remove)
        .post("/webhooks/subscriptions/{subscription_id}/recover", recover)
        .get("/webhooks/messages", list_messages)
        .get("/webhooks/messages/{message_id}", find_message)
}

/// A time as pydantic sends it: RFC 3339, or without an offset (UTC).
fn instant<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if let Ok(at) = DateTime::parse_from_rfc3339(&text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| naive.and_utc())
        .map_err(|_| serde::de::Error::custom("Input should be a valid datetime"))
}

fn optional_instant<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<DateTime<Utc>>, D::Error> {
    #[derive(Deserialize)]
    struct At(#[serde(deserialize_with = "instant")] DateTime<Utc>);
    Ok(Option::<At>::deserialize(deserializer)?.map(|At(at)| at))
}

#[derive(Debug, Deserialize)]
struct CreateSubscription {
    url: String,
    event_types: Vec<String>,
    secret: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UpdateSubscription {
    #[serde(default, deserialize_with = "non_null")]
    url: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "optional_instant")]
    recover_since: Option<DateTime<Utc>>,
    /// A new signing secret; the old one signs too for 24 hours.
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Recover {
    #[serde(deserialize_with = "instant")]
    since: DateTime<Utc>,
    #[serde(default, deserialize_with = "optional_instant")]
    until: Option<DateTime<Utc>>,
}

/// A 422 naming `event_types[index]` (in the body or the query) unless
/// `name` is an event type.
fn known_event_type(place: &str, index: usize, name: &str) -> Result<()> {
    if syncway_webhooks::is_event_type(name) {
        return Ok(());
    }
    Err(ApiError::Validation(vec![crate::error::FieldError {
        loc: vec![place.into(), "event_types".into(), index.into()],
        msg: format!(
            "unknown event type {name:?}; known: {}",
            syncway_webhooks::EVENT_TYPES.join(", ")
        ),
        kind: "enum".into(),
    }]))
}

/// The event types, each known, at least one, without repeats.
fn valid_event_types(types: Vec<String>) -> Result<Vec<String>> {
    if types.is_empty() {
        return Err(ApiError::invalid(
            &["body", "event_types"],
            "event_types must name at least one event type",
            "too_short",
        ));
    }
    let mut valid: Vec<String> = Vec::with_capacity(types.len());
    for (index, name) in types.into_iter().enumerate() {
        known_event_type("body", index, &name)?;
        if !valid.contains(&name) {
            valid.push(name);
        }
    }
    Ok(valid)
}

async fn valid_url(state: &AppState, url: &str) -> Result<String> {
    syncway_webhooks::send::check_url(state.policy(), url)
        .await
        .map(|_| url.to_owned())
        .map_err(|refusal| ApiError::invalid(&["body", "url"], refusal, "value_error"))
}

fn valid_secret(text: &str) -> Result<Secret> {
    Secret::parse(text)
        .map_err(|bad| ApiError::invalid(&["body", "secret"], bad.to_string(), "value_error"))
}

fn seal(state: &AppState, id: Uuid, secret: &Secret) -> Result<Vec<u8>> {
    state
        .cipher()
        .seal(id, &secret.to_sealed())
        .map_err(|error| ApiError::Internal(error.into()))
}

fn unseal(state: &AppState, id: Uuid, sealed: &[u8]) -> Result<String> {
    let opened = state
        .cipher()
        .open(id, sealed)
        .map_err(|error| ApiError::Internal(error.into()))?;
    Secret::from_sealed(&opened.credentials)
        .map(|secret| secret.to_text())
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("a sealed webhook secret holds no secret"))
        })
}

async fn list(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
) -> Result<Json<Vec<SubscriptionBody>>> {
    let client = state.pool().get().await?;
    let found = subscriptions::list(&client, organization).await?;
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

async fn create(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(Extension<AuditTarget>, Json<SubscriptionBody>)> {
    let request: CreateSubscription = json_body(body)?;
    let url = valid_url(&state, &request.url).await?;
    let filter_types = valid_event_types(request.event_types)?;
    let description = valid_description(request.description)?;
    let secret = match &request.secret {
        Some(text) => valid_secret(text)?,
        None => Secret::generate(),
    };
    let id = Uuid::now_v7();
    let sealed = seal(&state, id, &secret)?;
    let client = state.pool().get().await?;
    let created = subscriptions::insert(
        &client,
        &NewSubscription {
            id,
            organization_id: organization,
            url: &url,
            filter_types: &filter_types,
            description: description.as_deref(),
            sealed_secret: &sealed,
        },
    )
    .await?;
    Ok((Extension(AuditTarget(id.to_string())), Json(created.into())))
}

async fn find(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: std::result::Result<PathParams, ApiError>,
    RawQuery(query): RawQuery,
) -> Result<Json<SubscriptionDetail>> {
    let id = path_uuid(&params?, "subscription_id")?;
    let include_secret = QueryParams::parse(query.as_deref())?.bool("include_secret", false)?;
    let client = state.pool().get().await?;
    let subscription = subscriptions::find(&client, organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))?;
    let secret = if include_secret {
        Some(unseal(&state, id, &subscription.secret)?)
    } else {
        None
    };
    let attempts = messages::recent_attempts(&client, id, RECENT_ATTEMPTS).await?;
    Ok(Json(SubscriptionDetail {
        subscription: subscription.into(),
        delivery_attempts: attempts.into_iter().map(AttemptBody::from).collect(),
        secret,
    }))
}

async fn update(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: std::result::Result<PathParams, ApiError>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<SubscriptionBody>> {
    let id = path_uuid(&params?, "subscription_id")?;
    let request: UpdateSubscription = json_body(body)?;
    let mut changes = Changes {
        disabled: request.disabled,
        ..Changes::default()
    };
    if let Some(url) = &request.url {
        changes.url = Some(valid_url(&state, url).await?);
    }
    if let Some(types) = request.event_types {
        changes.filter_types = Some(valid_event_types(types)?);
    }
    if request.description.is_some() {
        changes.description = Some(valid_description(request.description)?);
    }
    if let Some(text) = &request.secret {
        changes.sealed_secret = Some(seal(&state, id, &valid_secret(text)?)?);
    }
    let client = state.pool().get().await?;
    let updated = subscriptions::update(&client, organization, id, &changes)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))?;
    if let Some(since) = request.recover_since {
        subscriptions::recover(&client, organization, id, since, None).await?;
    }
    Ok(Json(updated.into()))
}

async fn remove(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: std::result::Result<PathParams, ApiError>,
) -> Result<Json<SubscriptionBody>> {
    let id = path_uuid(&params?, "subscription_id")?;
    let client = state.pool().get().await?;
    let deleted = subscriptions::delete(&client, organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))?;
    Ok(Json(deleted.into()))
}

/// Failed deliveries of the window are sent again (an `until` before
/// `since` is an empty window); done in one statement, so the task is
/// `completed` when this answers.
async fn recover(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: std::result::Result<PathParams, ApiError>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<RecoveryBody>> {
    let id = path_uuid(&params?, "subscription_id")?;
    let request: Recover = json_body(body)?;
    let client = state.pool().get().await?;
    let recovered = subscriptions::recover(&client, organization, id, request.since, request.until)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook subscription"))?;
    Ok(Json(RecoveryBody {
        id: Uuid::now_v7(),
        status: "completed",
        recovered,
    }))
}

async fn list_messages(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<MessageBody>>> {
    let query = QueryParams::parse(query.as_deref())?;
    let limit = query.int("limit", 100, 1, 1000)?;
    let event_types: Vec<String> = query.all("event_types").map(str::to_owned).collect();
    for (index, name) in event_types.iter().enumerate() {
        known_event_type("query", index, name)?;
    }
    let client = state.pool().get().await?;
    let found = messages::list(&client, organization, &event_types, limit).await?;
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

async fn find_message(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: std::result::Result<PathParams, ApiError>,
    RawQuery(query): RawQuery,
) -> Result<Json<MessageBody>> {
    let id = path_uuid(&params?, "message_id")?;
    let include_attempts = QueryParams::parse(query.as_deref())?.bool("include_attempts", false)?;
    let client = state.pool().get().await?;
    let message = messages::find(&client, organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook message"))?;
    let mut body = MessageBody::from(message);
    if include_attempts {
        let attempts = messages::attempts(&client, id).await?;
        body.delivery_attempts = Some(attempts.into_iter().map(AttemptBody::from).collect());
    }
    Ok(Json(body))
}
