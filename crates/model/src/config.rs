//! Connector configurations: parsed and validated when a connection is
//! created or patched, so that a bad config is a 422 at the API and never a
//! failed job later. The connectors crate runs them; this module only knows
//! their shape.

use serde::{Deserialize, Serialize};

/// The connector short names this build knows, in the order they are listed.
pub const SHORT_NAMES: &[&str] = &["stub", "postgres", "local_files", "http_json"];

/// A validated connector configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "short_name", content = "config", rename_all = "snake_case")]
pub enum ConnectorConfig {
    Stub(StubConfig),
    Postgres(PostgresConfig),
    LocalFiles(LocalFilesConfig),
    HttpJson(HttpJsonConfig),
}

/// Why a connector configuration was refused. `field` is the path inside
/// `config` (empty for the config object itself).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown connector {0:?}; known connectors: {known}", known = SHORT_NAMES.join(", "))]
    UnknownConnector(String),
    #[error("{message}")]
    Invalid { field: Vec<String>, message: String },
}

impl ConfigError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: vec![field.to_owned()],
            message: message.into(),
        }
    }
}

/// `value` of `field` within `min..=max`, or the error that says so ("at
/// most max" when `min` is 0).
fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let message = if min == 0 {
        format!("{field} must be at most {max}")
    } else {
        format!("{field} must be between {min} and {max}")
    };
    Err(ConfigError::invalid(field, message))
}

impl ConnectorConfig {
    /// Parses `config` for the connector `short_name`. `null` means "all defaults".
    pub fn parse(short_name: &str, config: &serde_json::Value) -> Result<Self, ConfigError> {
        let empty = serde_json::Value::Object(Default::default());
        let config = if config.is_null() { &empty } else { config };
        // serde would accept a struct as a sequence; a config is an object.
        if !config.is_object() {
            return Err(ConfigError::Invalid {
                field: Vec::new(),
                message: "config must be a JSON object".into(),
            });
        }
        match short_name {
            "stub" => {
                let stub: StubConfig = from_value(config)?;
                stub.validate()?;
                Ok(ConnectorConfig::Stub(stub))
            }
            "postgres" => {
                let postgres: PostgresConfig = from_value(config)?;
                postgres.validate()?;
                Ok(ConnectorConfig::Postgres(postgres))
            }
            "local_files" => {
                let files: LocalFilesConfig = from_value(config)?;
                files.validate()?;
                Ok(ConnectorConfig::LocalFiles(files))
            }
            "http_json" => {
                let http: HttpJsonConfig = from_value(config)?;
                http.validate()?;
                Ok(ConnectorConfig::HttpJson(http))
            }
            other => Err(ConfigError::UnknownConnector(other.to_owned())),
        }
    }

    pub fn short_name(&self) -> &'static str {
        match self {
            ConnectorConfig::Stub(_) => "stub",
            ConnectorConfig::Postgres(_) => "postgres",
            ConnectorConfig::LocalFiles(_) => "local_files",
            ConnectorConfig::HttpJson(_) => "http_json",
        }
    }

    /// The effective configuration (defaults filled in), as stored and returned.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ConnectorConfig::Stub(config) => serde_json::to_value(config).unwrap_or_default(),
            ConnectorConfig::Postgres(config) => serde_json::to_value(config).unwrap_or_default(),
            ConnectorConfig::LocalFiles(config) => serde_json::to_value(config).unwrap_or_default(),
            ConnectorConfig::HttpJson(config) => serde_json::to_value(config).unwrap_or_default(),
        }
    }
}

fn from_value<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let field = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        ConfigError::Invalid {
            field,
            message: error.into_inner().to_string(),
        }
    })
}

/// How the stub source fails when `fail_after` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StubFailKind {
    #[default]
    Transient,
    Credentials,
}

/// Configuration of the `stub` connector: deterministic synthetic data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StubConfig {
    /// Entities `stub-0 .. stub-{entity_count-1}`.
    pub entity_count: u64,
    pub seed: u64,
    /// Size of each entity's `body` string.
    pub payload_bytes: u32,
    pub delay_ms_per_entity: u64,
    /// When set, the source raises an error after emitting this many entities.
    pub fail_after: Option<u64>,
    pub fail_kind: StubFailKind,
}

impl Default for StubConfig {
    fn default() -> Self {
        StubConfig {
            entity_count: 100,
            seed: 0,
            payload_bytes: 256,
            delay_ms_per_entity: 0,
            fail_after: None,
            fail_kind: StubFailKind::Transient,
        }
    }
}

impl StubConfig {
    pub const MAX_ENTITY_COUNT: u64 = 100_000_000;
    pub const MAX_PAYLOAD_BYTES: u32 = 1 << 20;
    pub const MAX_DELAY_MS: u64 = 60_000;

    fn validate(&self) -> Result<(), ConfigError> {
        check_range("entity_count", self.entity_count, 0, Self::MAX_ENTITY_COUNT)?;
        check_range(
            "payload_bytes",
            self.payload_bytes.into(),
            0,
            Self::MAX_PAYLOAD_BYTES.into(),
        )?;
        check_range(
            "delay_ms_per_entity",
            self.delay_ms_per_entity,
            0,
            Self::MAX_DELAY_MS,
        )
    }
}

/// Configuration of the `postgres` connector: one table of any PostgreSQL
/// database. Identifiers are names, not SQL: the connector quotes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `table` or `schema.table`.
    pub table: String,
    #[serde(default = "PostgresConfig::default_primary_key")]
    pub primary_key: String,
    /// The column incremental syncs read from (e.g. `updated_at`); without
    /// it (here or as the connection's `schedule.cursor_field`) every sync
    /// reads the whole table.
    #[serde(default)]
    pub cursor_column: Option<String>,
    /// A boolean column: rows where it is true are reported as deleted.
    #[serde(default)]
    pub deleted_column: Option<String>,
    #[serde(default = "PostgresConfig::default_batch_size")]
    pub batch_size: u32,
    /// Incremental syncs re-read this far behind a time cursor, so that rows
    /// committed late (with an earlier timestamp) are not missed; re-read
    /// rows count as unchanged.
    #[serde(default = "PostgresConfig::default_lookback_seconds")]
    pub lookback_seconds: u32,
}

impl PostgresConfig {
    pub const MAX_BATCH_SIZE: u32 = 10_000;
    pub const MAX_LOOKBACK_SECONDS: u32 = 86_400;

    fn default_primary_key() -> String {
        "id".to_owned()
    }

    fn default_batch_size() -> u32 {
        1000
    }

    fn default_lookback_seconds() -> u32 {
        5
    }

    /// The table as (schema, name); the schema is `None` when not given.
    pub fn table_parts(&self) -> (Option<&str>, &str) {
        match self.table.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, self.table.as_str()),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let (schema, name) = self.table_parts();
        if name.is_empty() || schema.is_some_and(str::is_empty) || name.contains('.') {
            return Err(ConfigError::invalid(
                "table",
                "table must be a table name or schema.table",
            ));
        }
        let mut columns = vec![("primary_key", Some(&self.primary_key))];
        columns.push(("cursor_column", self.cursor_column.as_ref()));
        columns.push(("deleted_column", self.deleted_column.as_ref()));
        for (field, column) in columns {
            if column.is_some_and(|column| column.is_empty()) {
                return Err(ConfigError::invalid(
                    field,
                    format!("{field} must not be empty"),
                ));
            }
        }
        check_range(
            "batch_size",
            self.batch_size.into(),
            1,
            Self::MAX_BATCH_SIZE.into(),
        )?;
        check_range(
            "lookback_seconds",
            self.lookback_seconds.into(),
            0,
            Self::MAX_LOOKBACK_SECONDS.into(),
        )
    }
}

/// Configuration of the `local_files` connector: a directory tree, one
/// entity per file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFilesConfig {
    /// The directory, as the worker sees it.
    pub path: String,
    /// Only files whose path relative to `path` matches (e.g. `**/*.md`).
    #[serde(default)]
    pub glob: Option<String>,
    /// Text content is stored up to this many bytes (the rest is cut, and
    /// the payload says so); files that are not UTF-8 text get no content.
    #[serde(default = "LocalFilesConfig::default_max_content_bytes")]
    pub max_content_bytes: u32,
    #[serde(default = "LocalFilesConfig::default_batch_size")]
    pub batch_size: u32,
}

impl LocalFilesConfig {
    pub const MAX_CONTENT_BYTES: u32 = 16 << 20;
    pub const MAX_BATCH_SIZE: u32 = 1000;

    fn default_max_content_bytes() -> u32 {
        64 * 1024
    }

    fn default_batch_size() -> u32 {
        100
    }

    /// The compiled `glob`, if any (valid once the config is parsed).
    pub fn matcher(&self) -> Result<Option<globset::GlobMatcher>, ConfigError> {
        self.glob
            .as_deref()
            .map(|glob| {
                globset::GlobBuilder::new(glob)
                    .literal_separator(true)
                    .build()
                    .map(|glob| glob.compile_matcher())
                    .map_err(|error| ConfigError::invalid("glob", format!("invalid glob: {error}")))
            })
            .transpose()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.trim().is_empty() {
            return Err(ConfigError::invalid("path", "path must name a directory"));
        }
        self.matcher()?;
        check_range(
            "max_content_bytes",
            self.max_content_bytes.into(),
            0,
            Self::MAX_CONTENT_BYTES.into(),
        )?;
        check_range(
            "batch_size",
            self.batch_size.into(),
            1,
            Self::MAX_BATCH_SIZE.into(),
        )
    }
}

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

    fn validate(&self) -> Result<(), ConfigError> {
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
    use super::*;
    use serde_json::json;

    #[test]
    fn stub_defaults_fill_missing_keys() {
        let parsed = ConnectorConfig::parse("stub", &json!({"entity_count": 5}));
        let Ok(ConnectorConfig::Stub(stub)) = parsed else {
            panic!("expected a stub config, got {parsed:?}");
        };
        assert_eq!(stub.entity_count, 5);
        assert_eq!(stub.payload_bytes, 256);
        assert_eq!(stub.fail_after, None);
        assert!(ConnectorConfig::parse("stub", &serde_json::Value::Null).is_ok());
    }

    #[test]
    fn bad_stub_configs_name_the_field() {
        let field_of = |value| match ConnectorConfig::parse("stub", &value) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field_of(json!({"entity_count": "many"})), ["entity_count"]);
        assert_eq!(field_of(json!({"entity_count": -1})), ["entity_count"]);
        assert_eq!(
            field_of(json!({"payload_bytes": 1u64 << 30})),
            ["payload_bytes"]
        );
        assert_eq!(field_of(json!({"fail_kind": "sometimes"})), ["fail_kind"]);
        assert!(matches!(
            ConnectorConfig::parse("stub", &json!({"colour": "red"})),
            Err(ConfigError::Invalid { message, .. }) if message.contains("colour")
        ));
        assert!(matches!(
            ConnectorConfig::parse("stub", &json!([1])),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn postgres_configs_need_a_table_and_name_the_bad_field() {
        let parsed = ConnectorConfig::parse("postgres", &json!({"table": "public.items"}));
        let Ok(ConnectorConfig::Postgres(config)) = parsed else {
            panic!("expected a postgres config, got {parsed:?}");
        };
        assert_eq!(config.table_parts(), (Some("public"), "items"));
        assert_eq!(config.primary_key, "id");
        assert_eq!((config.batch_size, config.lookback_seconds), (1000, 5));
        let field_of = |value| match ConnectorConfig::parse("postgres", &value) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert!(matches!(
            ConnectorConfig::parse("postgres", &json!({})),
            Err(ConfigError::Invalid { message, .. }) if message.contains("table")
        ));
        assert_eq!(field_of(json!({"table": "a.b.c"})), ["table"]);
        assert_eq!(field_of(json!({"table": ".b"})), ["table"]);
        assert_eq!(
            field_of(json!({"table": "t", "batch_size": 0})),
            ["batch_size"]
        );
        assert_eq!(
            field_of(json!({"table": "t", "primary_key": ""})),
            ["primary_key"]
        );
        assert_eq!(
            field_of(json!({"table": "t", "cursor_column": 5})),
            ["cursor_column"]
        );
        assert!(matches!(
            ConnectorConfig::parse("postgres", &json!({"table": "t", "colour": 1})),
            Err(ConfigError::Invalid { message, .. }) if message.contains("colour")
        ));
    }

    #[test]
    fn local_files_configs_check_path_and_glob() {
        let parsed =
            ConnectorConfig::parse("local_files", &json!({"path": "/data", "glob": "**/*.md"}));
        let Ok(ConnectorConfig::LocalFiles(config)) = parsed else {
            panic!("expected a local_files config, got {parsed:?}");
        };
        assert_eq!((config.max_content_bytes, config.batch_size), (65536, 100));
        let field_of = |value| match ConnectorConfig::parse("local_files", &value) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field_of(json!({"path": " "})), ["path"]);
        assert_eq!(field_of(json!({"path": "/d", "glob": "a[b"})), ["glob"]);
        assert_eq!(
            field_of(json!({"path": "/d", "batch_size": 0})),
            ["batch_size"]
        );
    }

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

    #[test]
    fn unknown_connectors_are_refused() {
        assert_eq!(
            ConnectorConfig::parse("nope", &json!({})),
            Err(ConfigError::UnknownConnector("nope".into()))
        );
    }
}
