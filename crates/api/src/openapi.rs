//! The served description of the API (`GET /openapi.json`, no key needed):
//! `docs/openapi.yaml`, turned into JSON when the crate is built (see
//! `build.rs`), and the table of routes it is checked against.

use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

const DESCRIPTION: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// The OpenAPI 3.1 description, as JSON text.
pub fn openapi_json() -> &'static str {
    DESCRIPTION
}

/// Every `(method, path template)` the API serves; the tests check it
/// against [`openapi_json`] both ways.
pub fn route_table() -> Vec<(Method, &'static str)> {
    crate::routes::table()
}

/// `GET /openapi.json`
pub async fn serve() -> Response {
    let mut response = DESCRIPTION.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
