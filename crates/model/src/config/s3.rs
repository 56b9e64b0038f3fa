//! The `s3` connector's configuration.

use serde::{Deserialize, Serialize};

use super::{ConfigError, check_range};

/// Configuration of the `s3` connector: the objects of one bucket (under a
/// prefix) of S3 or an S3-compatible store (MinIO, R2, GCS's S3 API), one
/// entity per object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// The service's URL, for S3-compatible stores; default AWS's
    /// `https://s3.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "S3Config::default_region")]
    pub region: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`
    /// (MinIO and most self-hosted stores need it).
    #[serde(default)]
    pub force_path_style: bool,
    /// Only keys whose part after `prefix` matches (e.g. `**/*.md`).
    #[serde(default)]
    pub glob: Option<String>,
    /// UTF-8 objects up to this size have their content stored; others
    /// none (the payload says why).
    #[serde(default = "S3Config::default_max_content_bytes")]
    pub max_content_bytes: u32,
    #[serde(default = "S3Config::default_batch_size")]
    pub batch_size: u32,
}

impl S3Config {
    pub const MAX_CONTENT_BYTES: u32 = 16 << 20;
    pub const MAX_BATCH_SIZE: u32 = 1000;

    fn default_region() -> String {
        "us-east-1".to_owned()
    }

    fn default_max_content_bytes() -> u32 {
        64 * 1024
    }

    fn default_batch_size() -> u32 {
        100
    }

    /// The compiled `glob`, if any.
    pub fn matcher(&self) -> Result<Option<globset::GlobMatcher>, ConfigError> {
        super::glob_matcher(self.glob.as_deref())
    }

    /// The endpoint as a URL: the configured one, or AWS's for the region.
    pub fn endpoint_url(&self) -> Result<url::Url, ConfigError> {
        let text = match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        };
        url::Url::parse(&text)
            .ok()
            .filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.has_host()
                    && url.username().is_empty()
                    && url.password().is_none()
                    && url.query().is_none()
            })
            .ok_or_else(|| {
                ConfigError::invalid(
                    "endpoint",
                    "endpoint must be an http(s) URL without user or query",
                )
            })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !self.bucket.starts_with(['-', '.'])
            && !self.bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(ConfigError::invalid(
                "bucket",
                "bucket must be 3 to 63 lower-case letters, digits, '-' or '.'",
            ));
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !region_ok {
            return Err(ConfigError::invalid(
                "region",
                "region must be a region name such as eu-west-1",
            ));
        }
        self.endpoint_url()?;
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
    fn s3_configs_check_bucket_endpoint_and_glob() {
        let parsed = ConnectorConfig::parse("s3", &json!({"bucket": "docs", "prefix": "a/"}));
        let Ok(ConnectorConfig::S3(config)) = parsed else {
            panic!("expected an s3 config, got {parsed:?}");
        };
        assert_eq!(config.region, "us-east-1");
        assert_eq!(
            config.endpoint_url().map(|u| u.to_string()).ok(),
            Some("https://s3.us-east-1.amazonaws.com/".to_owned())
        );
        let field_of = |value| match ConnectorConfig::parse("s3", &value) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field_of(json!({"bucket": "No"})), ["bucket"]);
        assert_eq!(
            field_of(json!({"bucket": "docs", "endpoint": "ftp://x"})),
            ["endpoint"]
        );
        assert_eq!(
            field_of(json!({"bucket": "docs", "endpoint": "http://u:p@x"})),
            ["endpoint"]
        );
        assert_eq!(field_of(json!({"bucket": "docs", "glob": "a[b"})), ["glob"]);
        assert_eq!(
            field_of(json!({"bucket": "docs", "region": "a b"})),
            ["region"]
        );
    }
}
