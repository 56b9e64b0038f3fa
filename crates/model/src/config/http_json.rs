//! The `http_json` connector's configuration.

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_range};

/// Configuration of the `http_json` connector: a paginated JSON API.
/// Dotted paths (`data.items`) address fields inside a response or item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpJsonConfig {
    /// The first page (http or https).
    pub url: String,
    /// Where the items are in a page; the page itself when absent.
    #[serde(default)]
    pub items_path: Option<String>,
    #[serde(default = "HttpJsonConfig::default_id_field")]
    pub id_field: String,
    /// Incremental syncs send the stored cursor as this query parameter...
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// ...and the cursor is the largest value of this item field seen.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Pagination by next link: where the next page's URL is in a page.
    #[serde(default)]
    pub next_link_path: Option<String>,
    /// Pagination by page token: where the next token is in a page...
    #[serde(default)]
    pub page_token_path: Option<String>,
    /// ...and the query parameter it is sent as.
    #[serde(default)]
    pub page_token_param: Option<String>,
    /// The header an `api_key` credential is sent in.
    #[serde(default = "HttpJsonConfig::default_api_key_header")]
    pub api_key_header: String,
    /// Where a `refresh_token` credential is exchanged (OAuth2).
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default = "HttpJsonConfig::default_timeout_seconds")]
    pub timeout_seconds: u32,
    /// A 429 or 503 with a Retry-After of at most `max_retry_wait_seconds`
    /// is retried after that wait, up to this many times per request.
    #[serde(default = "HttpJsonConfig::default_max_retries")]
    pub max_retries: u32,
    #[serde(default = "HttpJsonConfig::default_max_retry_wait_seconds")]
    pub max_retry_wait_seconds: u32,
}

impl HttpJsonConfig {
    fn default_id_field() -> String {
        "id".to_owned()
    }

    fn default_api_key_header() -> String {
        "X-API-Key".to_owned()
    }

    fn default_timeout_seconds() -> u32 {
        30
    }

    fn default_max_retries() -> u32 {
        3
    }

    fn default_max_retry_wait_seconds() -> u32 {
        30
    }

    /// Headers an `api_key` may not be sent in: ones that proxies, load
    /// balancers and cloud metadata services trust or treat specially.
    pub const RESERVED_HEADERS: &[&str] = &[
        "host",
        "metadata",
        "metadata-flavor",
        "x-google-metadata-request",
        "x-aws-ec2-metadata-token",
        "x-aws-ec2-metadata-token-ttl-seconds",
        "x-identity-header",
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "expect",
        "cookie",
    ];

    fn header_refused(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        Self::RESERVED_HEADERS.contains(&name.as_str())
            || name.starts_with("x-forwarded-")
            || name.starts_with("proxy-")
            || name.starts_with("sec-")
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let http = |field: &str, url: &str| {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            let Some(rest) = rest else {
                return Err(ConfigError::invalid(
                    field,
                    format!("{field} must be an http(s) URL"),
                ));
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if authority.contains('@') {
                return Err(ConfigError::invalid(
                    field,
                    format!(
                        "{field} must not carry user information (user:password@); put credentials in authentication.credentials"
                    ),
                ));
            }
            Ok(())
        };
        http("url", &self.url)?;
        if let Some(token_url) = &self.token_url {
            http("token_url", token_url)?;
        }
        if self.id_field.is_empty() {
            return Err(ConfigError::invalid(
                "id_field",
                "id_field must not be empty",
            ));
        }
        let header = &self.api_key_header;
        let token = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ConfigError::invalid(
                "api_key_header",
                "api_key_header must be an HTTP header name",
            ));
        }
        if Self::header_refused(header) {
            return Err(ConfigError::invalid(
                "api_key_header",
                format!(
                    "{header} cannot carry an API key: proxies and metadata services treat it specially"
                ),
            ));
        }
        if self.cursor_param.is_some() != self.cursor_field.is_some() {
            return Err(ConfigError::invalid(
                "cursor_field",
                "cursor_param and cursor_field go together",
            ));
        }
        if self.page_token_path.is_some() != self.page_token_param.is_some() {
            return Err(ConfigError::invalid(
                "page_token_param",
                "page_token_path and page_token_param go together",
            ));
        }
        if self.page_token_path.is_some() && self.next_link_path.is_some() {
            return Err(ConfigError::invalid(
                "next_link_path",
                "use next_link_path or page_token_path, not both",
            ));
        }
        check_range("timeout_seconds", self.timeout_seconds.into(), 1, 600)?;
        if self.max_retries > 10 || self.max_retry_wait_seconds > 600 {
            return Err(ConfigError::invalid(
                "max_retries",
                "max_retries must be at most 10 and max_retry_wait_seconds at most 600",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConnectorConfig};
    use serde_json::json;

    #[test]
    fn http_json_configs_check_urls_and_pairs() {
        let parsed =
            ConnectorConfig::parse("http_json", &json!({"url": "https://api.example/items"}));
        let Ok(ConnectorConfig::HttpJson(config)) = parsed else {
            panic!("expected an http_json config, got {parsed:?}");
        };
        assert_eq!(
            (config.id_field.as_str(), config.timeout_seconds),
            ("id", 30)
        );
        let field_of = |value| match ConnectorConfig::parse("http_json", &value) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field_of(json!({"url": "ftp://x"})), ["url"]);
        assert_eq!(
            field_of(json!({"url": "http://x", "cursor_param": "since"})),
            ["cursor_field"]
        );
        assert_eq!(
            field_of(json!({"url": "http://x", "page_token_path": "next"})),
            ["page_token_param"]
        );
        assert_eq!(
            field_of(json!({"url": "http://x", "token_url": "x"})),
            ["token_url"]
        );
        assert_eq!(
            field_of(json!({"url": "http://x", "timeout_seconds": 0})),
            ["timeout_seconds"]
        );
        assert_eq!(field_of(json!({"url": "https://u:p@x/items"})), ["url"]);
        assert_eq!(
            field_of(json!({"url": "https://x", "token_url": "https://a@t/token"})),
            ["token_url"]
        );
        // An @ in the path or query is no userinfo.
        assert!(
            ConnectorConfig::parse("http_json", &json!({"url": "https://x/a@b?c=d@e"})).is_ok()
        );
        for header in [
            "Host",
            "Metadata-Flavor",
            "X-Forwarded-For",
            "proxy-authorization",
            "bad header",
        ] {
            assert_eq!(
                field_of(json!({"url": "https://x", "api_key_header": header})),
                ["api_key_header"],
                "{header}"
            );
        }
    }
}
