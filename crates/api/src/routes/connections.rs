//! Source connections: create, list, read, patch, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use serde::Deserialize;
use serde_json::{Map, Value};
use syncway_model::{ConfigError, ConnectorConfig};
use syncway_store::connections::{self, ConnectionFields, Schedule};
use syncway_store::jobs;

use super::collections::{valid_description, valid_name};
use super::jobs::triggered;
use super::table::Routes;
use crate::audit::AuditTarget;
use crate::auth::Organization;
use crate::error::{ApiError, FieldError, Result};
use crate::extract::{PathParams, QueryParams, json_body, path_uuid};
use crate::schedule_input::{self, ScheduleInput};
use crate::wire::{SourceConnectionBody, SourceConnectionListItemBody};
use crate::{AppState, containment};

pub fn routes() -> Routes {
    const ONE: &str = "/source-connections/{source_connection_id}";
    Routes::new()
        .get("/source-connections", list)
        .post("/source-connections", create)
        .get(ONE, find)
        .patch(ONE, update)
        .delete(ONE, remove)
}

#[derive(Debug, Deserialize)]
struct AuthenticationInput {
    credentials: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct CreateConnection {
    short_name: String,
    readable_collection_id: String,
    name: Option<String>,
    description: Option<String>,
    config: Option<Value>,
    schedule: Option<ScheduleInput>,
    authentication: Option<AuthenticationInput>,
    sync_immediately: Option<bool>,
    max_delete_fraction: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct UpdateConnection {
    name: Option<String>,
    description: Option<String>,
    config: Option<Value>,
    schedule: Option<ScheduleInput>,
    authentication: Option<AuthenticationInput>,
    max_delete_fraction: Option<f64>,
}

/// The mass-deletion guard's fraction of a connection: in (0, 1].
fn valid_fraction(fraction: Option<f64>) -> Result<Option<f64>> {
    match fraction {
        Some(value) if !(value > 0.0 && value <= 1.0) => Err(ApiError::invalid(
            &["body", "max_delete_fraction"],
            "max_delete_fraction must be greater than 0 and at most 1 (1 disables the guard)",
            "less_than_equal",
        )),
        other => Ok(other),
    }
}

/// Validates a connector config, naming the offending field on failure.
fn parse_config(short_name: &str, config: &Value) -> Result<ConnectorConfig> {
    ConnectorConfig::parse(short_name, config).map_err(|error| match error {
        ConfigError::UnknownConnector(_) => {
            ApiError::invalid(&["body", "short_name"], error.to_string(), "enum")
        }
        ConfigError::Invalid { field, message } => {
            let mut loc: Vec<Value> = vec!["body".into(), "config".into()];
            loc.extend(field.into_iter().map(Value::from));
            let kind = if message.starts_with("unknown field") {
                "extra_forbidden"
            } else {
                "value_error"
            };
            ApiError::Validation(vec![FieldError {
                loc,
                msg: message,
                kind: kind.into(),
            }])
        }
    })
}

/// The effective config as stored (defaults filled in).
fn stored_config(config: &ConnectorConfig) -> Result<Value> {
    config.to_json().map_err(|error| {
        ApiError::Internal(anyhow::Error::new(error).context("serializing a config"))
    })
}

fn default_name(short_name: &str) -> String {
    let mut chars = short_name.chars();
    let title: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{} connection", title.replace('_', " "))
}

fn sealed_credentials(
    state: &AppState,
    connection_id: uuid::Uuid,
    credentials: Option<Map<String, Value>>,
) -> Result<Option<Vec<u8>>> {
    credentials
        .map(|credentials| {
            state
                .cipher()
                .seal(connection_id, &Value::Object(credentials))
        })
        .transpose()
        .map_err(|error| ApiError::Internal(error.into()))
}

/// Seals the connection's stored credentials again with the current key,
/// when they were sealed with a previous one (or the old format).
async fn reseal(
    state: &AppState,
    client: &impl syncway_store::GenericClient,
    organization: uuid::Uuid,
    connection_id: uuid::Uuid,
) -> Result<()> {
    let Some(sealed) = connections::sealed_credentials(client, organization, connection_id).await?
    else {
        return Ok(());
    };
    // Current ones stay; ones that do not open here are the worker's to report.
    if let Ok(opened) = state.cipher().open(connection_id, &sealed)
        && opened.stale
    {
        let fresh = state
            .cipher()
            .seal(connection_id, &opened.credentials)
            .map_err(|error| ApiError::Internal(error.into()))?;
        connections::reseal_credentials(client, connection_id, &sealed, &fresh).await?;
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(Extension<AuditTarget>, Json<SourceConnectionBody>)> {
    let request: CreateConnection = json_body(body)?;
    let config = parse_config(
        &request.short_name,
        request.config.as_ref().unwrap_or(&Value::Null),
    )?;
    let name = match &request.name {
        Some(name) => valid_name(name)?,
        None => default_name(&request.short_name),
    };
    let id = uuid::Uuid::now_v7();
    let mut schedule = Schedule::default();
    schedule_input::apply(
        &mut schedule,
        request.schedule,
        id,
        state.schedule_jitter(),
        true,
    )?;
    let fields = ConnectionFields {
        name,
        description: valid_description(request.description)?,
        config: stored_config(&config)?,
        schedule,
        max_delete_fraction: valid_fraction(request.max_delete_fraction)?
            .unwrap_or(connections::DEFAULT_MAX_DELETE_FRACTION),
    };
    let credentials = request.authentication.and_then(|auth| auth.credentials);
    containment::check(state.policy(), &config, credentials.as_ref()).await?;
    let credentials = sealed_credentials(&state, id, credentials)?;

    let mut client = state.pool().get().await?;
    let transaction = client.transaction().await?;
    let connection = connections::insert(
        &transaction,
        id,
        organization,
        &request.readable_collection_id,
        config.short_name(),
        &fields,
        credentials.as_deref(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("collection"))?;
    let connection = if request.sync_immediately.unwrap_or(false) {
        let outcome = jobs::trigger(&transaction, organization, connection.id, false).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => return Err(error.into()),
        };
        let reread = connections::find(&transaction, organization, connection.id).await?;
        transaction.commit().await?;
        triggered(&state, Ok(outcome))?;
        reread.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("connection vanished")))?
    } else {
        transaction.commit().await?;
        connection
    };
    Ok((
        Extension(AuditTarget(connection.id.to_string())),
        Json(connection.into()),
    ))
}

async fn list(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<SourceConnectionListItemBody>>> {
    let query = QueryParams::parse(query.as_deref())?;
    let skip = query.int("skip", 0, 0, i64::MAX)?;
    let limit = query.int("limit", 100, 1, 1000)?;
    let client = state.pool().get().await?;
    let items =
        connections::list(&client, organization, query.get("collection"), skip, limit).await?;
    Ok(Json(items.into_iter().map(Into::into).collect()))
}

async fn find(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: PathParams,
) -> Result<Json<SourceConnectionBody>> {
    let id = path_uuid(&params, "source_connection_id")?;
    let client = state.pool().get().await?;
    connections::find(&client, organization, id)
        .await?
        .map(|connection| Json(connection.into()))
        .ok_or_else(|| ApiError::not_found("source connection"))
}

async fn update(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: PathParams,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<SourceConnectionBody>> {
    let id = path_uuid(&params, "source_connection_id")?;
    let request: UpdateConnection = json_body(body)?;
    let mut client = state.pool().get().await?;
    // What takes time or leaves the process (the config's checks, the
    // egress policy's DNS look-ups, sealing) is done before the row is
    // locked, so that no transaction stays open across them.
    let before = connections::find(&client, organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("source connection"))?;
    let config = match &request.config {
        Some(config) => Some(parse_config(&before.short_name, config)?),
        None => None,
    };
    let credentials = request.authentication.and_then(|auth| auth.credentials);
    if config.is_some() || credentials.is_some() {
        let checked = match &config {
            Some(config) => config.clone(),
            None => parse_config(&before.short_name, &before.fields.config)?,
        };
        containment::check(state.policy(), &checked, credentials.as_ref()).await?;
    }
    let sealed = sealed_credentials(&state, id, credentials)?;

    // Concurrent updates of one connection take turns on its row, and each
    // applies its fields to the row as it is now: none is lost.
    let transaction = client.transaction().await?;
    if !connections::lock(&transaction, organization, id).await? {
        return Err(ApiError::not_found("source connection"));
    }
    let current = connections::find(&transaction, organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("source connection"))?;
    if sealed.is_some() && config.is_none() && current.fields.config != before.fields.config {
        // The credentials were checked against a config changed meanwhile.
        return Err(ApiError::Conflict(
            "the connection's config changed while this update was checked; send it again".into(),
        ));
    }
    let mut fields = current.fields.clone();
    if let Some(name) = &request.name {
        fields.name = valid_name(name)?;
    }
    if let Some(description) = valid_description(request.description)? {
        fields.description = Some(description);
    }
    if let Some(fraction) = valid_fraction(request.max_delete_fraction)? {
        fields.max_delete_fraction = fraction;
    }
    let config = match config {
        Some(config) => config,
        None => parse_config(&current.short_name, &current.fields.config)?,
    };
    fields.config = stored_config(&config)?;
    let replan = schedule_input::apply(
        &mut fields.schedule,
        request.schedule,
        id,
        state.schedule_jitter(),
        false,
    )?;
    if sealed.is_none() {
        reseal(&state, &transaction, organization, id).await?;
    }
    connections::update(
        &transaction,
        organization,
        id,
        &fields,
        sealed.as_deref(),
        replan,
    )
    .await?;
    let updated = connections::find(&transaction, organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("source connection"))?;
    transaction.commit().await?;
    Ok(Json(updated.into()))
}

async fn remove(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: PathParams,
) -> Result<Json<SourceConnectionBody>> {
    let id = path_uuid(&params, "source_connection_id")?;
    let mut client = state.pool().get().await?;
    let transaction = client.transaction().await?;
    let connection = connections::find(&transaction, organization, id)
        .await?
        .ok_or_else(|| ApiError::not_found("source connection"))?;
    connections::delete(&transaction, organization, id).await?;
    transaction.commit().await?;
    Ok(Json(connection.into()))
}
