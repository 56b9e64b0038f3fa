//! Categories of credential failures, as the Airweave API names them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    OauthCredentialsExpired,
    ApiKeyInvalid,
    AuthProviderAccountGone,
    AuthProviderCredentialsInvalid,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::OauthCredentialsExpired => "oauth_credentials_expired",
            ErrorCategory::ApiKeyInvalid => "api_key_invalid",
            ErrorCategory::AuthProviderAccountGone => "auth_provider_account_gone",
            ErrorCategory::AuthProviderCredentialsInvalid => "auth_provider_credentials_invalid",
        }
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
