//! The configuration of the one-table connectors, `postgres` and `mysql`:
//! the same shape for both (a table, its key, an optional cursor and
//! deleted column), read by each connector in its own SQL.

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_range};

/// Configuration of a one-table connector: one table (or view) of a
/// PostgreSQL or MySQL/MariaDB database. Identifiers are names, not SQL:
/// the connector quotes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `table` or `schema.table` (MySQL: `database.table`).
    pub table: String,
    #[serde(default = "TableConfig::default_primary_key")]
    pub primary_key: String,
    /// The column incremental syncs read from (e.g. `updated_at`); without
    /// it (here or as the connection's `schedule.cursor_field`) every sync
    /// reads the whole table.
    #[serde(default)]
    pub cursor_column: Option<String>,
    /// A boolean column (MySQL: `BOOLEAN`, i.e. `TINYINT(1)`, or `BIT(1)`):
    /// rows where it is true are reported as deleted.
    #[serde(default)]
    pub deleted_column: Option<String>,
    #[serde(default = "TableConfig::default_batch_size")]
    pub batch_size: u32,
    /// Incremental syncs re-read this far behind a time cursor, so that rows
    /// committed late (with an earlier timestamp) are not missed; re-read
    /// rows count as unchanged.
    #[serde(default = "TableConfig::default_lookback_seconds")]
    pub lookback_seconds: u32,
}

impl TableConfig {
    pub const MAX_BATCH_SIZE: u32 = 10_000;
    pub const MAX_LOOKBACK_SECONDS: u32 = 86_400;

    fn default_primary_key() -> String {
        "id".to_owned()
    }

    fn default_batch_size() -> u32 {
        5000
    }

    fn default_lookback_seconds() -> u32 {
        5
    }

    /// The table as (schema, name); the schema (MySQL: the database) is
    /// `None` when not given.
    pub fn table_parts(&self) -> (Option<&str>, &str) {
        match self.table.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, self.table.as_str()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConnectorConfig};
    use serde_json::json;

    #[test]
    fn postgres_configs_need_a_table_and_name_the_bad_field() {
        let parsed = ConnectorConfig::parse("postgres", &json!({"table": "public.items"}));
        let Ok(ConnectorConfig::Postgres(config)) = parsed else {
            panic!("expected a postgres config, got {parsed:?}");
        };
        assert_eq!(config.table_parts(), (Some("public"), "items"));
        assert_eq!(config.primary_key, "id");
        assert_eq!((config.batch_size, config.lookback_seconds), (5000, 5));
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
}
