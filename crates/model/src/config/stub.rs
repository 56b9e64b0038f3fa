//! The `stub` connector's configuration.

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_range};

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

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConnectorConfig};
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
}
