//! What an API key may do (CONTRACT.md §6, §7).

use serde::{Deserialize, Serialize};

/// A key's role. `operator` keys may use the `/admin/*` routes and make
/// other operator keys; `member` keys see only their organization's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    Member,
    Operator,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Member => "member",
            KeyRole::Operator => "operator",
        }
    }

    /// The role stored as `text` (anything else is a member: the column's
    /// check constraint allows only the two).
    pub fn from_db(text: &str) -> KeyRole {
        if text == "operator" {
            KeyRole::Operator
        } else {
            KeyRole::Member
        }
    }
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys are `sw_` and this many URL-safe (alphanumeric) characters: about
/// 256 bits.
pub const KEY_RANDOM_CHARS: usize = 43;

/// How many characters of a key are kept to show it by (`sw_` and eight).
pub const KEY_PREFIX_CHARS: usize = 11;

/// The part of `key` that is stored and shown (never enough to use it).
pub fn key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_text() {
        for role in [KeyRole::Member, KeyRole::Operator] {
            assert_eq!(KeyRole::from_db(role.as_str()), role);
        }
        assert_eq!(key_prefix("sw_abcdefghijklmnop"), "sw_abcdefgh");
    }
}
