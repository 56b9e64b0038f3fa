//! Encryption of source credentials at rest (ChaCha20-Poly1305).
//!
//! Credentials arrive as JSON through the API, are sealed at once, and are
//! opened only by the worker that runs the connector. The sealed form is
//! `2 || key id (4 bytes) || nonce (12 bytes) || ciphertext with tag`, with
//! the connection's id as associated data: a blob copied to another
//! connection's row does not open. The key id names which configured key
//! sealed it, so `security.encryption_key` can be rotated: blobs sealed
//! with a key listed in `security.previous_keys` still open, and report
//! themselves stale so that the caller seals them again with the current
//! key. Blobs of the first format (`1 || nonce || ciphertext`, no key id,
//! no associated data) still open with any configured key, also stale.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::settings::SecuritySettings;

const VERSION_1: u8 = 1;
const VERSION: u8 = 2;
const NONCE_LEN: usize = 12;
const KEY_ID_LEN: usize = 4;

/// A key used when none is configured. It is public (it is in this source),
/// so it protects nothing: start-up warns loudly when it is in use.
const DEVELOPMENT_KEY: [u8; 32] = *b"syncway-development-only-key-32b";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("encryption key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("stored credentials cannot be decrypted with the configured keys")]
    Undecryptable,
    #[error("credentials could not be sealed")]
    Unsealable,
    #[error(
        "SYNCWAY_SECURITY__ENCRYPTION_KEY is not set: set it to 64 hex characters \
         (openssl rand -hex 32), or, on a development machine only, set \
         SYNCWAY_SECURITY__ALLOW_DEVELOPMENT_KEY=true to seal credentials with a public key"
    )]
    NoKey,
}

struct SealingKey {
    id: [u8; KEY_ID_LEN],
    cipher: ChaCha20Poly1305,
}

impl SealingKey {
    fn new(key: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"syncway credential key id")
            .chain_update(key)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        SealingKey {
            id,
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    fn parse(key: &SecretString) -> Result<Self, CredentialError> {
        let bytes = hex::decode(key.expose_secret().trim()).map_err(|_| CredentialError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CredentialError::BadKey)?;
        Ok(Self::new(&key))
    }
}

/// Opened credentials; `stale` when they were sealed with a previous key
/// or the old format, and should be sealed again.
#[derive(Clone, PartialEq)]
pub struct Opened {
    pub credentials: serde_json::Value,
    pub stale: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("credentials", &"<redacted>")
            .field("stale", &self.stale)
            .finish()
    }
}

#[derive(Clone)]
pub struct CredentialCipher {
    keys: std::sync::Arc<Vec<SealingKey>>,
    development: bool,
}

impl std::fmt::Debug for CredentialCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCipher")
            .field("development", &self.development)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl CredentialCipher {
    /// The configured key (and previous keys), or the development key
    /// (with a warning).
    pub fn from_settings(security: &SecuritySettings) -> Result<Self, CredentialError> {
        // An empty value (e.g. `KEY=` in an env file) means "not set".
        let key = security
            .encryption_key
            .as_ref()
            .filter(|key| !key.expose_secret().trim().is_empty());
        let (current, development) = match key {
            Some(key) => (SealingKey::parse(key)?, false),
            None if !security.allow_development_key => return Err(CredentialError::NoKey),
            None => {
                // Once per process: `syncway dev` makes a cipher for the
                // API and for each worker, and one warning says it all.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "SYNCWAY_SECURITY__ENCRYPTION_KEY is not set: source credentials are \
                         encrypted with a PUBLIC DEVELOPMENT KEY. Set a random 32-byte hex key \
                         (openssl rand -hex 32) before storing real credentials."
                    );
                });
                (SealingKey::new(&DEVELOPMENT_KEY), true)
            }
        };
        let mut keys = vec![current];
        for previous in &security.previous_keys {
            keys.push(SealingKey::parse(previous)?);
        }
        Ok(CredentialCipher {
            keys: std::sync::Arc::new(keys),
            development,
        })
    }

    fn current(&self) -> &SealingKey {
        // `from_settings` always puts the current key first.
        &self.keys[0]
    }

    /// Seals `credentials` for the connection `connection_id`, with the
    /// current key.
    pub fn seal(
        &self,
        connection_id: Uuid,
        credentials: &serde_json::Value,
    ) -> Result<Vec<u8>, CredentialError> {
        let plaintext = serde_json::to_vec(credentials).map_err(|_| CredentialError::Unsealable)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let key = self.current();
        // Encryption fails only for inputs beyond 256 GiB.
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: connection_id.as_bytes(),
                },
            )
            .map_err(|_| CredentialError::Unsealable)?;
        let mut sealed = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Opens what [`Self::seal`] sealed for `connection_id` (or a blob of
    /// the first format).
    pub fn open(&self, connection_id: Uuid, sealed: &[u8]) -> Result<Opened, CredentialError> {
        let (version, rest) = sealed.split_first().ok_or(CredentialError::Undecryptable)?;
        let (plaintext, stale) = match *version {
            VERSION if rest.len() >= KEY_ID_LEN + NONCE_LEN => {
                let (id, rest) = rest.split_at(KEY_ID_LEN);
                let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
                let (at, key) = self
                    .keys
                    .iter()
                    .enumerate()
                    .find(|(_, key)| key.id == id)
                    .ok_or(CredentialError::Undecryptable)?;
                let payload = Payload {
                    msg: ciphertext,
                    aad: connection_id.as_bytes(),
                };
                let plaintext = key
                    .cipher
                    .decrypt(Nonce::from_slice(nonce), payload)
                    .map_err(|_| CredentialError::Undecryptable)?;
                (plaintext, at > 0)
            }
            VERSION_1 if rest.len() >= NONCE_LEN => {
                let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
                let plaintext = self
                    .keys
                    .iter()
                    .find_map(|key| {
                        key.cipher
                            .decrypt(Nonce::from_slice(nonce), ciphertext)
                            .ok()
                    })
                    .ok_or(CredentialError::Undecryptable)?;
                (plaintext, true)
            }
            _ => return Err(CredentialError::Undecryptable),
        };
        let credentials =
            serde_json::from_slice(&plaintext).map_err(|_| CredentialError::Undecryptable)?;
        Ok(Opened { credentials, stale })
    }

    /// A blob in the first format (no key id, no associated data), as
    /// releases before key rotation wrote it. For tests of the fallback.
    #[doc(hidden)]
    pub fn seal_first_format(
        &self,
        credentials: &serde_json::Value,
    ) -> Result<Vec<u8>, CredentialError> {
        let plaintext = serde_json::to_vec(credentials).map_err(|_| CredentialError::Unsealable)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let ciphertext = self
            .current()
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_slice())
            .map_err(|_| CredentialError::Unsealable)?;
        let mut sealed = vec![VERSION_1];
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cipher(key: &str, previous: &[&str]) -> CredentialCipher {
        CredentialCipher::from_settings(&SecuritySettings {
            encryption_key: Some(SecretString::from(key.repeat(32))),
            previous_keys: previous
                .iter()
                .map(|k| SecretString::from(k.repeat(32)))
                .collect(),
            allow_development_key: false,
        })
        .expect("valid keys")
    }

    #[test]
    fn sealed_credentials_open_only_with_the_same_key_and_connection() {
        let cipher = cipher("11", &[]);
        let connection = Uuid::new_v4();
        let credentials = json!({"password": "hunter2"});
        let sealed = cipher.seal(connection, &credentials).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
        let opened = cipher.open(connection, &sealed).expect("opens");
        assert_eq!(
            (opened.credentials, opened.stale),
            (credentials.clone(), false)
        );
        assert_ne!(
            sealed,
            cipher.seal(connection, &credentials).unwrap(),
            "nonces must differ"
        );
        // Moved to another connection's row: does not open.
        assert!(cipher.open(Uuid::new_v4(), &sealed).is_err());
        assert!(self::cipher("22", &[]).open(connection, &sealed).is_err());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(cipher.open(connection, &tampered).is_err());
    }

    #[test]
    fn a_rotated_key_still_opens_old_blobs_and_marks_them_stale() {
        let connection = Uuid::new_v4();
        let credentials = json!({"api_key": "k"});
        let old = cipher("11", &[]).seal(connection, &credentials).unwrap();
        let rotated = cipher("22", &["11"]);
        let opened = rotated
            .open(connection, &old)
            .expect("the previous key opens it");
        assert_eq!(
            (opened.credentials, opened.stale),
            (credentials.clone(), true)
        );
        let resealed = rotated.seal(connection, &credentials).unwrap();
        assert!(!rotated.open(connection, &resealed).expect("opens").stale);
        // Once the previous key is dropped, the old blob no longer opens.
        assert!(cipher("22", &[]).open(connection, &old).is_err());
    }

    #[test]
    fn blobs_of_the_first_format_still_open() {
        let cipher = cipher("11", &[]);
        let credentials = json!({"url": "postgres://x"});
        let first = cipher.seal_first_format(&credentials).unwrap();
        assert_eq!(first[0], 1);
        let opened = cipher
            .open(Uuid::new_v4(), &first)
            .expect("the fallback opens it");
        assert_eq!((opened.credentials, opened.stale), (credentials, true));
    }

    #[test]
    fn malformed_keys_are_refused_and_empty_ones_mean_unset() {
        for key in ["zz", &"11".repeat(31), &"11".repeat(33)] {
            let settings = SecuritySettings {
                encryption_key: Some(SecretString::from(key)),
                previous_keys: Vec::new(),
                allow_development_key: true,
            };
            assert!(CredentialCipher::from_settings(&settings).is_err());
        }
        for key in ["", "  "] {
            let mut settings = SecuritySettings {
                encryption_key: Some(SecretString::from(key)),
                previous_keys: Vec::new(),
                allow_development_key: false,
            };
            let refused = CredentialCipher::from_settings(&settings);
            assert!(matches!(refused, Err(CredentialError::NoKey)));
            settings.allow_development_key = true;
            let cipher = CredentialCipher::from_settings(&settings);
            assert!(cipher.is_ok_and(|cipher| cipher.development));
        }
    }
}
