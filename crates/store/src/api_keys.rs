//! Organizations and their API keys. Only SHA-256 digests of keys are stored.

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::StoreError;

/// The digest under which a key is stored and looked up.
pub fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The organization owning a live (not revoked, not expired) key.
pub async fn find_organization(
    client: &impl GenericClient,
    key: &str,
) -> Result<Option<Uuid>, StoreError> {
    find_organization_by_digest(client, &digest(key)).await
}

/// [`find_organization`] for a key known by its [`digest`].
pub async fn find_organization_by_digest(
    client: &impl GenericClient,
    digest: &[u8],
) -> Result<Option<Uuid>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT organization_id FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .await?;
    let row = client.query_opt(&statement, &[&digest]).await?;
    Ok(row.map(|row| row.get(0)))
}

/// Ensures an organization named `name` exists and that `key` belongs to it.
/// Idempotent, so every process may run it at start-up. Returns the
/// organization id.
pub async fn ensure_organization_with_key(
    client: &impl GenericClient,
    name: &str,
    key: &str,
) -> Result<Uuid, StoreError> {
    client
        .execute(
            "INSERT INTO organizations (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&Uuid::now_v7(), &name],
        )
        .await?;
    let organization: Uuid = client
        .query_one("SELECT id FROM organizations WHERE name = $1", &[&name])
        .await?
        .get(0);
    client
        .execute(
            "INSERT INTO api_keys (id, organization_id, key_hash) VALUES ($1, $2, $3)
             ON CONFLICT (key_hash) DO NOTHING",
            &[&Uuid::now_v7(), &organization, &digest(key)],
        )
        .await?;
    Ok(organization)
}

/// Marks a key revoked: later lookups no longer find it.
pub async fn revoke(client: &impl GenericClient, key: &str) -> Result<bool, StoreError> {
    let revoked = client
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&digest(key)],
        )
        .await?;
    Ok(revoked == 1)
}
