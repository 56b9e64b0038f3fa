//! A connection's stored entities, page by page.

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use serde::Serialize;
use syncway_store::entities::{self, StoredEntity};

use crate::AppState;
use crate::auth::Organization;
use crate::error::{ApiError, Result};
use crate::extract::{PathParams, QueryParams, path_uuid};
use crate::routes::table::Routes;

pub fn routes() -> Routes {
    Routes::new().get("/source-connections/{source_connection_id}/entities", list)
}

#[derive(Debug, Serialize)]
struct EntityBody {
    entity_id: String,
    /// Hex of the BLAKE3 content hash.
    content_hash: String,
    payload: serde_json::Value,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<StoredEntity> for EntityBody {
    fn from(entity: StoredEntity) -> Self {
        EntityBody {
            entity_id: entity.entity_id,
            content_hash: hex::encode(entity.content_hash),
            payload: entity.payload,
            updated_at: entity.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
struct EntityPage {
    items: Vec<EntityBody>,
    /// Pass as `after` for the next page; null on the last one.
    next: Option<String>,
}

/// The page cursor: the hex of the last entity id given, so that it needs
/// no escaping in a URL whatever the ids hold. An id is text Postgres can
/// store: UTF-8 without NUL (a cursor holding one was never given out).
fn decode_after(raw: &str) -> Result<String> {
    hex::decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| !id.contains('\0'))
        .ok_or_else(|| {
            ApiError::invalid(
                &["query", "after"],
                "after must be the `next` value of a previous page",
                "value_error",
            )
        })
}

/// `GET /source-connections/{id}/entities?limit=&after=`
async fn list(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: PathParams,
    RawQuery(query): RawQuery,
) -> Result<Json<EntityPage>> {
    let connection = path_uuid(&params, "source_connection_id")?;
    let query = QueryParams::parse(query.as_deref())?;
    let limit = query.int("limit", 100, 1, 1000)?;
    let after = query.get("after").map(decode_after).transpose()?;
    let client = state.pool().get().await?;
    if !syncway_store::connections::exists(&client, organization, connection).await? {
        return Err(ApiError::not_found("source connection"));
    }
    // One more than asked tells whether there is a next page.
    let mut items = entities::list(&client, connection, after.as_deref(), limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next = if more {
        items
            .last()
            .map(|entity| hex::encode(entity.entity_id.as_bytes()))
    } else {
        None
    };
    Ok(Json(EntityPage {
        items: items.into_iter().map(EntityBody::from).collect(),
        next,
    }))
}
