//! The `local_files` connector's configuration.

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_range};

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
        super::glob_matcher(self.glob.as_deref())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConnectorConfig};
    use serde_json::json;

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
}
