//! Signing secrets and signatures (Standard Webhooks v1). A secret is
//! `whsec_` and the base64 of 24 to 64 random bytes; a signature is `v1,`
//! and the base64 of HMAC-SHA256, keyed with the secret's bytes, of
//! `{id}.{timestamp}.{body}`. While a rotated-out secret still signs, the
//! header carries both signatures, space-separated.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use rand::Rng;

const PREFIX: &str = "whsec_";
/// The bytes of a secret syncway makes.
const GENERATED_BYTES: usize = 32;
const MIN_BYTES: usize = 24;
const MAX_BYTES: usize = 64;

/// A signing secret: its key bytes. Its text form is shown only when
/// asked for (`include_secret`), never logged: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a given secret was refused; safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret must be `whsec_` followed by the base64 of 24 to 64 bytes, or 24 to 64 plain characters"
)]
pub struct BadSecret;

impl Secret {
    /// A new random secret.
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; GENERATED_BYTES];
        rand::rng().fill(bytes.as_mut_slice());
        Secret(bytes)
    }

    /// A secret a user gave: `whsec_` + base64 of 24-64 bytes, or 24-64
    /// plain characters whose bytes are the key.
    pub fn parse(text: &str) -> Result<Secret, BadSecret> {
        let bytes = match text.strip_prefix(PREFIX) {
            Some(encoded) => STANDARD.decode(encoded).map_err(|_| BadSecret)?,
            None => text.as_bytes().to_vec(),
        };
        if (MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
            Ok(Secret(bytes))
        } else {
            Err(BadSecret)
        }
    }

    /// The `whsec_` form.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The JSON that is sealed at rest (the API seals it, the deliverer
    /// opens it with [`Secret::from_sealed`]).
    pub fn to_sealed(&self) -> serde_json::Value {
        serde_json::json!({ "secret": self.to_text() })
    }

    /// The secret in JSON that [`Secret::to_sealed`] made.
    pub fn from_sealed(value: &serde_json::Value) -> Option<Secret> {
        value
            .get("secret")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| Secret::parse(text).ok())
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let mut mac = match hmac::Hmac::<sha2_hmac::Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one `v1,` entry per secret that signs.
pub fn header(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_bounds_hold() {
        let secret = Secret::generate();
        assert_eq!(Secret::parse(&secret.to_text()), Ok(secret));
        assert_eq!(Secret::parse("whsec_AAAA"), Err(BadSecret));
        assert_eq!(Secret::parse("short"), Err(BadSecret));
        assert!(Secret::parse(&"x".repeat(24)).is_ok());
        assert_eq!(Secret::parse(&"x".repeat(65)), Err(BadSecret));
        assert_eq!(format!("{:?}", Secret::generate()), "Secret(..)");
        let sealed = Secret::generate();
        assert_eq!(Secret::from_sealed(&sealed.to_sealed()), Some(sealed));
    }

    #[test]
    fn a_rotation_signs_with_both() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let both = header(&[&new, &old], "msg_1", 1_700_000_000, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], new.sign("msg_1", 1_700_000_000, b"{}"));
        assert_eq!(parts[1], old.sign("msg_1", 1_700_000_000, b"{}"));
    }
}
