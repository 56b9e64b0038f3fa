//! Collections: `POST /collections`, `GET /collections/{readable_id}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use rand::Rng;
use serde::Deserialize;
use syncway_model::names::{MAX_NAME_LEN, display_name};
use syncway_store::collections;

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::Organization;
use crate::error::{ApiError, Result};
use crate::extract::{PathParams, QueryParams, json_body};
use crate::routes::table::Routes;
use crate::wire::CollectionBody;

pub fn routes() -> Routes {
    Routes::new()
        .get("/collections", list)
        .post("/collections", create)
        .get("/collections/{readable_id}", find)
}

#[derive(Debug, Deserialize)]
struct CreateCollection {
    name: String,
    readable_id: Option<String>,
}

/// A display name ([`display_name`]: trimmed, 1 to [`MAX_NAME_LEN`]
/// characters), or the 422 naming `name`.
pub(crate) fn valid_name(name: &str) -> Result<String> {
    display_name(name).map(str::to_owned).ok_or_else(|| {
        ApiError::invalid(
            &["body", "name"],
            format!("name must be 1 to {MAX_NAME_LEN} characters"),
            "string_length",
        )
    })
}

/// Longest description accepted for connections.
pub(crate) const MAX_DESCRIPTION_LEN: usize = 4096;

/// A description of at most [`MAX_DESCRIPTION_LEN`] characters.
pub(crate) fn valid_description(description: Option<String>) -> Result<Option<String>> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_LEN => Err(ApiError::invalid(
            &["body", "description"],
            format!("description must be at most {MAX_DESCRIPTION_LEN} characters"),
            "string_too_long",
        )),
        other => Ok(other),
    }
}

/// 3 to 64 lowercase letters, digits and hyphens, not starting or ending
/// with a hyphen: safe in URLs and unambiguous.
fn valid_readable_id(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// A readable id derived from the name, with a random suffix.
fn readable_id_from(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "collection" } else { slug };
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect();
    format!("{slug}-{suffix}")
}

async fn create(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(Extension<AuditTarget>, Json<CollectionBody>)> {
    let request: CreateCollection = json_body(body)?;
    let name = valid_name(&request.name)?;
    let readable_id = match request.readable_id {
        Some(id) if valid_readable_id(&id) => id,
        Some(_) => {
            return Err(ApiError::invalid(
                &["body", "readable_id"],
                "readable_id must be 3 to 64 lowercase letters, digits or hyphens, \
                 not starting or ending with a hyphen",
                "string_pattern_mismatch",
            ));
        }
        None => readable_id_from(&name),
    };
    let client = state.pool().get().await?;
    match collections::insert(&client, organization, &name, &readable_id).await {
        Ok(collection) => Ok((
            Extension(AuditTarget(collection.id.to_string())),
            Json(collection.into()),
        )),
        Err(error) if error.constraint() == Some(syncway_store::COLLECTION_READABLE_ID_UNIQUE) => {
            Err(ApiError::Conflict(format!(
                "a collection with readable_id {readable_id:?} already exists"
            )))
        }
        Err(error) => Err(error.into()),
    }
}

/// `GET /collections?skip=&limit=`
async fn list(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<CollectionBody>>> {
    let query = QueryParams::parse(query.as_deref())?;
    let skip = query.int("skip", 0, 0, i64::MAX)?;
    let limit = query.int("limit", 100, 1, 1000)?;
    let client = state.pool().get().await?;
    let collections = collections::list(&client, organization, skip, limit).await?;
    Ok(Json(collections.into_iter().map(Into::into).collect()))
}

async fn find(
    State(state): State<AppState>,
    Extension(Organization(organization)): Extension<Organization>,
    params: PathParams,
) -> Result<Json<CollectionBody>> {
    // Raw (still percent-encoded): a valid readable id needs no decoding, and
    // anything else simply matches no collection.
    let readable_id = params.get("readable_id").to_owned();
    let client = state.pool().get().await?;
    collections::find_by_readable_id(&client, organization, &readable_id)
        .await?
        .map(|collection| Json(collection.into()))
        .ok_or_else(|| ApiError::not_found("collection"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_readable_ids_are_valid() {
        for name in ["My Docs", "  ", "Ünïcode ✓ name", &"x".repeat(300), "a--b"] {
            let id = readable_id_from(name);
            assert!(valid_readable_id(&id), "{name:?} gave {id:?}");
        }
        assert!(readable_id_from("My Docs").starts_with("my-docs-"));
    }

    #[test]
    fn readable_id_rules() {
        assert!(valid_readable_id("abc"));
        assert!(valid_readable_id("my-collection-1"));
        assert!(valid_readable_id(&"a".repeat(64)));
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", "a b", &"a".repeat(65)] {
            assert!(!valid_readable_id(bad), "{bad}");
        }
    }
}
