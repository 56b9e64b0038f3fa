//! The console's stylesheet and script, compiled into the binary. Each is
//! served under a name carrying its digest (so a new build is never read
//! from a stale cache, and an old name may be cached for a year) and
//! linked with Subresource Integrity.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// The name it is served under: `console-<digest>.<ext>`.
    pub name: String,
    /// `sha256-…`, for the `integrity` attribute.
    pub integrity: String,
    content_type: &'static str,
    body: &'static str,
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        Asset {
            name: format!("{stem}-{}.{ext}", &hex::encode(digest)[..16]),
            integrity: format!(
                "sha256-{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ),
            content_type,
            body,
        }
    }

    /// Where a page links it.
    pub fn href(&self) -> String {
        format!("/console/assets/{}", self.name)
    }
}

pub static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "console",
        "css",
        "text/css; charset=utf-8",
        include_str!("../../assets/console.css"),
    )
});

pub static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "console",
        "js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console.js"),
    )
});

/// `GET /console/assets/{name}`: an asset by its current name; any other
/// name is 404 (an old page asks again after reloading).
pub async fn serve(Path(name): Path<String>) -> Response {
    for asset in [&*STYLE, &*SCRIPT] {
        if asset.name == name {
            let mut response = asset.body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            return response;
        }
    }
    (StatusCode::NOT_FOUND, "no such asset").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_digest_and_integrity_is_sha256() {
        assert!(STYLE.name.starts_with("console-") && STYLE.name.ends_with(".css"));
        assert!(SCRIPT.integrity.starts_with("sha256-"));
        assert_ne!(STYLE.name, SCRIPT.name);
    }
}
