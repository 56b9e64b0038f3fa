//! Encryption of source credentials at rest (ChaCha20-Poly1305).
//!
//! Credentials arrive as JSON through the API, are sealed at once, and are
//! opened only by the worker that runs the connector. The sealed form is
//! `version (1 byte) || nonce (12 bytes) || ciphertext with tag`.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A key used when none is configured. It is public (it is in this source),
/// so it protects nothing: start-up warns loudly when it is in use.
const DEVELOPMENT_KEY: [u8; 32] = *b"syncway-development-only-key-32b";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("encryption key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("stored credentials cannot be decrypted with the configured key")]
    Undecryptable,
}

#[derive(Clone)]
pub struct CredentialCipher {
    cipher: ChaCha20Poly1305,
    development: bool,
}

impl std::fmt::Debug for CredentialCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCipher")
            .field("development", &self.development)
            .finish_non_exhaustive()
    }
}

impl CredentialCipher {
    /// The configured key, or the development key (with a warning).
    pub fn from_settings(key: Option<&SecretString>) -> Result<Self, CredentialError> {
        // An empty value (e.g. `KEY=` in an env file) means "not set".
        let key = key.filter(|key| !key.expose_secret().trim().is_empty());
        match key {
            Some(key) => {
                let bytes =
                    hex::decode(key.expose_secret().trim()).map_err(|_| CredentialError::BadKey)?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| CredentialError::BadKey)?;
                Ok(Self::new(&key, false))
            }
            None => {
                tracing::warn!(
                    "SYNCWAY_SECURITY__ENCRYPTION_KEY is not set: source credentials are \
                     encrypted with a PUBLIC DEVELOPMENT KEY. Set a random 32-byte hex key \
                     (openssl rand -hex 32) before storing real credentials."
                );
                Ok(Self::new(&DEVELOPMENT_KEY, true))
            }
        }
    }

    fn new(key: &[u8; 32], development: bool) -> Self {
        CredentialCipher {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            development,
        }
    }

    pub fn seal(&self, credentials: &serde_json::Value) -> Vec<u8> {
        let plaintext = serde_json::to_vec(credentials).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        // Encryption fails only for inputs beyond 256 GiB.
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_slice())
            .unwrap_or_default();
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, sealed: &[u8]) -> Result<serde_json::Value, CredentialError> {
        let (version, rest) = sealed.split_first().ok_or(CredentialError::Undecryptable)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(CredentialError::Undecryptable);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CredentialError::Undecryptable)?;
        serde_json::from_slice(&plaintext).map_err(|_| CredentialError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sealed_credentials_open_only_with_the_same_key() {
        let key = SecretString::from("11".repeat(32));
        let cipher = CredentialCipher::from_settings(Some(&key)).unwrap_or_else(|e| panic!("{e}"));
        let credentials = json!({"password": "hunter2"});
        let sealed = cipher.seal(&credentials);
        assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
        assert_eq!(cipher.open(&sealed).ok(), Some(credentials.clone()));
        assert_ne!(sealed, cipher.seal(&credentials), "nonces must differ");

        let other = CredentialCipher::from_settings(Some(&SecretString::from("22".repeat(32))))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(cipher.open(&tampered).is_err());
    }

    #[test]
    fn malformed_keys_are_refused_and_empty_ones_mean_unset() {
        for key in ["zz", &"11".repeat(31), &"11".repeat(33)] {
            assert!(CredentialCipher::from_settings(Some(&SecretString::from(key))).is_err());
        }
        for key in ["", "  "] {
            let cipher = CredentialCipher::from_settings(Some(&SecretString::from(key)));
            assert!(cipher.is_ok_and(|cipher| cipher.development));
        }
    }
}
