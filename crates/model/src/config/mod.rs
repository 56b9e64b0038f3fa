//! Connector configurations: parsed and validated when a connection is
//! created or patched, so that a bad config is a 422 at the API and never a
//! failed job later. The connectors crate runs them; this module only knows
//! their shape, one module per connector.
//!
//! Adding a connector's config: a module with its struct (serde `default`s
//! and a `validate`), and one line in the [`connectors!`] list below.

mod http_json;
mod local_files;
mod postgres_cdc;
mod s3;
mod stub;
mod table;

use serde::{Deserialize, Serialize};

pub use http_json::HttpJsonConfig;
pub use local_files::LocalFilesConfig;
pub use postgres_cdc::PostgresCdcConfig;
pub use s3::S3Config;
pub use stub::{StubConfig, StubFailKind};
pub use table::TableConfig;

/// `postgres`: one table of a PostgreSQL database.
pub type PostgresConfig = TableConfig;
/// `mysql`: one table or view of a MySQL or MariaDB database.
pub type MysqlConfig = TableConfig;

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
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: vec![field.to_owned()],
            message: message.into(),
        }
    }
}

/// `value` of `field` within `min..=max`, or the error that says so ("at
/// most max" when `min` is 0).
pub(crate) fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
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

/// A `glob` setting compiled (`*` stays within one path segment, `**`
/// crosses them), or the error naming the field.
pub(crate) fn glob_matcher(
    glob: Option<&str>,
) -> Result<Option<globset::GlobMatcher>, ConfigError> {
    glob.map(|glob| {
        globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map(|glob| glob.compile_matcher())
            .map_err(|error| ConfigError::invalid("glob", format!("invalid glob: {error}")))
    })
    .transpose()
}

/// Defines [`ConnectorConfig`] and everything keyed by short name from one
/// list: the enum, [`SHORT_NAMES`], `parse`, `short_name` and `to_json`.
macro_rules! connectors {
    ($($variant:ident($config:ty) = $name:literal,)+) => {
        /// The connector short names this build knows, in the order they are listed.
        pub const SHORT_NAMES: &[&str] = &[$($name),+];

        /// A validated connector configuration.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "short_name", content = "config", rename_all = "snake_case")]
        pub enum ConnectorConfig {
            $($variant($config),)+
        }

        impl ConnectorConfig {
            /// Parses `config` for the connector `short_name`. `null` means
            /// "all defaults".
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
                    $($name => {
                        let parsed: $config = from_value(config)?;
                        parsed.validate()?;
                        Ok(ConnectorConfig::$variant(parsed))
                    })+
                    other => Err(ConfigError::UnknownConnector(other.to_owned())),
                }
            }

            pub fn short_name(&self) -> &'static str {
                match self {
                    $(ConnectorConfig::$variant(_) => $name,)+
                }
            }

            /// The effective configuration (defaults filled in), as stored
            /// and returned.
            pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $(ConnectorConfig::$variant(config) => serde_json::to_value(config),)+
                }
            }
        }
    };
}

connectors! {
    Stub(StubConfig) = "stub",
    Postgres(PostgresConfig) = "postgres",
    LocalFiles(LocalFilesConfig) = "local_files",
    HttpJson(HttpJsonConfig) = "http_json",
    Mysql(MysqlConfig) = "mysql",
    PostgresCdc(PostgresCdcConfig) = "postgres_cdc",
    S3(S3Config) = "s3",
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_connectors_are_refused() {
        assert_eq!(
            ConnectorConfig::parse("nope", &json!({})),
            Err(ConfigError::UnknownConnector("nope".into()))
        );
    }

    #[test]
    fn every_short_name_parses_and_round_trips() {
        for (name, config) in [
            ("stub", json!({})),
            ("postgres", json!({"table": "t"})),
            ("local_files", json!({"path": "/d"})),
            ("http_json", json!({"url": "https://x"})),
            ("mysql", json!({"table": "db.t"})),
            ("postgres_cdc", json!({"tables": ["t"]})),
            ("s3", json!({"bucket": "docs"})),
        ] {
            let parsed = ConnectorConfig::parse(name, &config).expect("a valid config");
            assert_eq!(parsed.short_name(), name);
            let stored = parsed.to_json().expect("serializable");
            assert_eq!(ConnectorConfig::parse(name, &stored).ok(), Some(parsed));
        }
        assert_eq!(
            SHORT_NAMES,
            [
                "stub",
                "postgres",
                "local_files",
                "http_json",
                "mysql",
                "postgres_cdc",
                "s3"
            ]
        );
    }
}
