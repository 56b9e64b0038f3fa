//! Middleware every response goes through: the request id a client may
//! send (kept only when it is a plain token), the per-request timeout, and
//! the security headers.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a client's `x-request-id` may go into logs and back out as it
/// is: 1 to 128 of letters, digits and `-_.:`. Anything else is replaced
/// by a fresh id, so logs never carry what a client smuggled in.
fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Drops a client's request id that is not [`acceptable_request_id`] (the
/// request-id layer then makes one).
pub async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let ids = request.headers().get_all(&REQUEST_ID);
    let mut count = 0;
    let mut acceptable = true;
    for value in ids {
        count += 1;
        acceptable &= acceptable_request_id(value);
    }
    if count > 1 || !acceptable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

/// Answers 408 when a request (reading its body included) takes longer
/// than `limit`. On ordinary routes only: event streams live as long as
/// their job.
pub async fn time_limit(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// `x-content-type-options: nosniff` on every response, and
/// `cache-control: no-store` unless the response says otherwise (answers
/// are per key and may carry secrets once; only the console's
/// fingerprinted assets may be cached).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_plain_tokens() {
        for good in ["abc", "0f8e-11:22.x_y", &"a".repeat(128)] {
            assert!(acceptable_request_id(
                &HeaderValue::from_str(good).expect("header")
            ));
        }
        for bad in [
            "",
            "a b",
            "x\ty",
            "<script>",
            "line\u{7f}",
            &"a".repeat(129),
            "é",
        ] {
            let Ok(value) = HeaderValue::from_bytes(bad.as_bytes()) else {
                continue;
            };
            assert!(!acceptable_request_id(&value), "{bad:?}");
        }
    }
}
