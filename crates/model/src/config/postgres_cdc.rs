//! The `postgres_cdc` connector's configuration.

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_range};

/// Configuration of the `postgres_cdc` connector: tables of a PostgreSQL
/// database read through logical decoding (a publication and a
/// replication slot), so that hard deletes reach incremental syncs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCdcConfig {
    /// `table` or `schema.table` (schema `public` when not given), one or more.
    pub tables: Vec<String>,
    /// The publication to read; default `syncway_<connection id>`.
    #[serde(default)]
    pub publication: Option<String>,
    /// The replication slot; default `syncway_<connection id>`.
    #[serde(default)]
    pub slot: Option<String>,
    /// Whether syncway creates the publication and slot when missing.
    #[serde(default = "PostgresCdcConfig::default_create_slot")]
    pub create_slot: bool,
    /// A slot that holds more WAL than this fails the job and is dropped
    /// (when syncway created it), rather than filling the source's disk.
    #[serde(default = "PostgresCdcConfig::default_max_lag_bytes")]
    pub max_lag_bytes: u64,
    #[serde(default = "PostgresCdcConfig::default_batch_size")]
    pub batch_size: u32,
}

impl PostgresCdcConfig {
    pub const MAX_BATCH_SIZE: u32 = 10_000;
    pub const MAX_TABLES: usize = 100;

    fn default_create_slot() -> bool {
        true
    }

    fn default_max_lag_bytes() -> u64 {
        1 << 30
    }

    fn default_batch_size() -> u32 {
        5000
    }

    /// Each table as (schema, name).
    pub fn table_parts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tables
            .iter()
            .map(|table| table.split_once('.').unwrap_or(("public", table.as_str())))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.tables.is_empty() || self.tables.len() > Self::MAX_TABLES {
            return Err(ConfigError::invalid(
                "tables",
                format!("tables must list 1 to {} tables", Self::MAX_TABLES),
            ));
        }
        for (schema, name) in self.table_parts() {
            if schema.is_empty() || name.is_empty() || name.contains('.') {
                return Err(ConfigError::invalid(
                    "tables",
                    "each table must be a table name or schema.table",
                ));
            }
        }
        for (field, name) in [("publication", &self.publication), ("slot", &self.slot)] {
            if let Some(name) = name {
                let valid = !name.is_empty()
                    && name.len() <= 63
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(ConfigError::invalid(
                        field,
                        format!("{field} must be 1 to 63 lower-case letters, digits or _"),
                    ));
                }
            }
        }
        check_range("max_lag_bytes", self.max_lag_bytes, 1 << 20, 1 << 50)?;
        check_range(
            "batch_size",
            self.batch_size.into(),
            1,
            Self::MAX_BATCH_SIZE.into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConnectorConfig};
    use serde_json::json;

    #[test]
    fn cdc_configs_need_tables_and_valid_names() {
        let parsed = ConnectorConfig::parse("postgres_cdc", &json!({"tables": ["items", "s.t"]}));
        let Ok(ConnectorConfig::PostgresCdc(config)) = parsed else {
            panic!("expected a postgres_cdc config, got {parsed:?}");
        };
        assert_eq!(
            config.table_parts().collect::<Vec<_>>(),
            [("public", "items"), ("s", "t")]
        );
        assert!(config.create_slot);
        let field_of = |value| match ConnectorConfig::parse("postgres_cdc", &value) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field_of(json!({"tables": []})), ["tables"]);
        assert_eq!(field_of(json!({"tables": ["a.b.c"]})), ["tables"]);
        assert_eq!(
            field_of(json!({"tables": ["t"], "slot": "Bad-Name"})),
            ["slot"]
        );
        assert_eq!(
            field_of(json!({"tables": ["t"], "publication": "x".repeat(64)})),
            ["publication"]
        );
        assert_eq!(
            field_of(json!({"tables": ["t"], "max_lag_bytes": 5})),
            ["max_lag_bytes"]
        );
    }
}
