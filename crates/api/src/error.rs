//! The API's error type: one variant per status code, rendered with the
//! contract's bodies. Internal causes are logged (inside the request span, so
//! with the request id) and never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use syncway_store::StoreError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One entry of a 422 body, shaped like FastAPI's validation errors.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    /// Where: `["query", "limit"]`, `["path", "source_connection_id"]`,
    /// `["body", "config", "entity_count"]`.
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        FieldError {
            loc: loc.iter().map(|part| Value::from(*part)).collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: the request carries no API key.
    #[error("missing API key")]
    MissingKey,
    /// 403: the key is unknown, revoked or expired.
    #[error("invalid API key")]
    InvalidKey,
    /// 404: no such object for this organization.
    #[error("{0}")]
    NotFound(String),

    /// A valid key without the right (the `/admin/*` routes).
    #[error("{0}")]
    Forbidden(String),
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with the object's state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body exceeds the size limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 422: the request is malformed.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 408: the request was not answered within the request timeout.
    #[error("the request took too long and was stopped; retry it")]
    RequestTimeout,
    /// 429: the key holds as many event streams open as it may.
    #[error(
        "this API key has too many event streams open ({0} per API process now); \
         close one and retry"
    )]
    TooManyStreams(u32),
    /// 503: a dependency (Postgres) is unreachable; try again shortly.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 503 from `/readyz`: the process is not ready yet (or no longer).
    /// An answer to a probe, not a failed request: logged at debug level
    /// only, so that a start-up's readiness polls log no warnings.
    #[error("not ready: {0}")]
    NotReady(&'static str),
    /// 500: a bug or an unexpected failure.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn invalid(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        ApiError::Validation(vec![FieldError::new(loc, msg, kind)])
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            ApiError::Unavailable(error.into())
        } else {
            ApiError::Internal(error.into())
        }
    }
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "2";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::MissingKey => StatusCode::UNAUTHORIZED,
            ApiError::InvalidKey => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match self {
            ApiError::Validation(errors) => {
                (status, Json(json!({ "detail": errors }))).into_response()
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (status, Json(json!({ "detail": "internal error" }))).into_response()
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "dependency unavailable");
                let mut response = (
                    status,
                    Json(json!({ "detail": "service temporarily unavailable, retry shortly" })),
                )
                    .into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
                response
            }
            ApiError::NotReady(reason) => {
                tracing::debug!(reason, "not ready");
                let mut response =
                    (status, Json(json!({ "detail": self.to_string() }))).into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
                response
            }
            ApiError::TooManyStreams(_) => {
                let mut response =
                    (status, Json(json!({ "detail": self.to_string() }))).into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
                response
            }
            ApiError::InvalidKey => {
                let mut response =
                    (status, Json(json!({ "detail": self.to_string() }))).into_response();
                response.extensions_mut().insert(crate::limits::AuthFailed);
                response
            }
            other => (status, Json(json!({ "detail": other.to_string() }))).into_response(),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::from(error).into()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::from(error).into()
    }
}
