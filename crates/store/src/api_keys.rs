//! API keys (CONTRACT.md §7). Only SHA-256 digests of keys are stored; a key
//! is shown once, when it is made. Every lookup reads the table, so a
//! revoked key stops working in every API process at once.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use rand::Rng;
use sha2::{Digest, Sha256};
use syncway_model::KeyRole;
use syncway_model::api_key::{KEY_RANDOM_CHARS, key_prefix};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::StoreError;

/// The digest under which a key is stored and looked up.
pub fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new random key in the contract's format (`sw_` + 43 alphanumerics).
pub fn generate() -> String {
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("sw_{random}")
}

/// A key as its owner sees it (never the key itself).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: KeyRole,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, organization_id, name, prefix, role, created_at, expires_at, last_used_at";

impl ApiKey {
    fn from_row(row: &Row) -> Self {
        ApiKey {
            id: row.get("id"),
            organization_id: row.get("organization_id"),
            name: row.get("name"),
            prefix: row.get("prefix"),
            role: KeyRole::from_db(row.get("role")),
            created_at: row.get("created_at"),
            expires_at: row.get("expires_at"),
            last_used_at: row.get("last_used_at"),
        }
    }
}

/// Who a live key speaks for.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key_id: Uuid,
    /// The key's shown prefix (not a secret: listings show it).
    pub key_prefix: String,
    pub organization_id: Uuid,
    /// The role the key acts with: an operator key outside the operator
    /// organization acts as a member key.
    pub role: KeyRole,
    /// The key's organization is the operator organization.
    pub in_operator_organization: bool,
}

/// The owner of a live (not revoked, not expired) key, by its [`digest`];
/// `operator_organization` names the only organization whose operator keys
/// act as operator keys.
pub async fn find_by_digest(
    client: &impl GenericClient,
    digest: &[u8],
    operator_organization: &str,
) -> Result<Option<KeyOwner>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT k.id, k.organization_id, k.role, o.name = $2, k.prefix
             FROM api_keys k JOIN organizations o ON o.id = k.organization_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > now())",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&digest, &operator_organization])
        .await?;
    Ok(row.map(|row| {
        let in_operator_organization: bool = row.get(3);
        let role = match KeyRole::from_db(row.get(2)) {
            KeyRole::Operator if !in_operator_organization => KeyRole::Member,
            role => role,
        };
        KeyOwner {
            key_id: row.get(0),
            key_prefix: row.get(4),
            organization_id: row.get(1),
            role,
            in_operator_organization,
        }
    }))
}

/// Live operator keys of organizations other than the operator
/// organization: they act as member keys.
pub async fn stray_operator_keys(
    client: &impl GenericClient,
    operator_organization: &str,
) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM api_keys k JOIN organizations o ON o.id = k.organization_id
             WHERE k.role = 'operator' AND k.revoked_at IS NULL AND o.name <> $1",
            &[&operator_organization],
        )
        .await?;
    Ok(row.get(0))
}

/// The organization owning a live key.
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

/// What a new key is.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub organization_id: Uuid,
    pub name: &'a str,
    pub role: KeyRole,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Makes a key; returns it as stored and the key itself (to show once).
pub async fn create(
    client: &impl GenericClient,
    new: &NewKey<'_>,
) -> Result<(ApiKey, String), StoreError> {
    let key = generate();
    let row = client
        .query_one(
            &format!(
                "INSERT INTO api_keys (id, organization_id, key_hash, name, prefix, role, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &new.organization_id,
                &digest(&key),
                &new.name,
                &key_prefix(&key),
                &new.role.as_str(),
                &new.expires_at,
            ],
        )
        .await?;
    Ok((ApiKey::from_row(&row), key))
}

/// An organization's keys that are not revoked (expired ones included),
/// newest first.
pub async fn list(
    client: &impl GenericClient,
    organization_id: Uuid,
) -> Result<Vec<ApiKey>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM api_keys
                 WHERE organization_id = $1 AND revoked_at IS NULL
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&organization_id],
        )
        .await?;
    Ok(rows.iter().map(ApiKey::from_row).collect())
}

/// One of an organization's keys that is not revoked.
pub async fn find(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<ApiKey>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM api_keys
                 WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL"
            ),
            &[&id, &organization_id],
        )
        .await?;
    Ok(row.as_ref().map(ApiKey::from_row))
}

/// Revokes one of an organization's keys; `None` when there is no such
/// key (or it was revoked already).
pub async fn revoke_by_id(
    client: &impl GenericClient,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<ApiKey>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE api_keys SET revoked_at = now()
                 WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL
                 RETURNING {COLUMNS}"
            ),
            &[&id, &organization_id],
        )
        .await?;
    Ok(row.as_ref().map(ApiKey::from_row))
}

/// Marks a key revoked by the key itself: later lookups no longer find it.
pub async fn revoke(client: &impl GenericClient, key: &str) -> Result<bool, StoreError> {
    let revoked = client
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&digest(key)],
        )
        .await?;
    Ok(revoked == 1)
}

/// Rotation's outcome.
#[derive(Debug)]
pub enum Rotated {
    /// The new key (and the key itself); the old one expires after the grace.
    Done(ApiKey, String),
    /// No such live key of the organization.
    Missing,
    /// The key has expired: there is nothing to rotate.
    Expired,
}

/// Makes a new key with the old one's name, role and expiry, and lets the
/// old one work for `grace_seconds` more (never longer than it would have).
/// Runs in one transaction of its own.
pub async fn rotate(
    client: &mut deadpool_postgres::Object,
    organization_id: Uuid,
    id: Uuid,
    grace_seconds: i64,
) -> Result<Rotated, StoreError> {
    let transaction = client.transaction().await?;
    let Some(old) = transaction
        .query_opt(
            "SELECT name, role, expires_at, (expires_at IS NOT NULL AND expires_at <= now())
             FROM api_keys
             WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL
             FOR UPDATE",
            &[&id, &organization_id],
        )
        .await?
    else {
        return Ok(Rotated::Missing);
    };
    if old.get::<_, bool>(3) {
        return Ok(Rotated::Expired);
    }
    transaction
        .execute(
            "UPDATE api_keys
             SET expires_at = LEAST(COALESCE(expires_at, 'infinity'),
                                    now() + make_interval(secs => $2::bigint))
             WHERE id = $1",
            &[&id, &grace_seconds],
        )
        .await?;
    let name: String = old.get(0);
    let new = NewKey {
        organization_id,
        name: &name,
        role: KeyRole::from_db(old.get(1)),
        expires_at: old.get(2),
    };
    let (key, secret) = create(&transaction, &new).await?;
    transaction.commit().await?;
    Ok(Rotated::Done(key, secret))
}

/// Records that a key was used (callers do this at most once a minute per
/// key: see the API's auth module).
pub async fn touch(client: &impl GenericClient, digest: &[u8]) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("UPDATE api_keys SET last_used_at = now() WHERE key_hash = $1")
        .await?;
    client.execute(&statement, &[&digest]).await?;
    Ok(())
}

/// Ensures an organization named `name` exists and that `key` belongs to it
/// as a member key. Idempotent. Returns the organization id.
pub async fn ensure_organization_with_key(
    client: &impl GenericClient,
    name: &str,
    key: &str,
) -> Result<Uuid, StoreError> {
    let organization = crate::organizations::ensure(client, name).await?;
    client
        .execute(
            "INSERT INTO api_keys (id, organization_id, key_hash, prefix) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key_hash) DO NOTHING",
            &[
                &Uuid::now_v7(),
                &organization,
                &digest(key),
                &key_prefix(key),
            ],
        )
        .await?;
    Ok(organization)
}

/// What [`ensure_bootstrap`] found.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub organization_id: Uuid,
    /// Bootstrap keys of earlier values that it revoked.
    pub revoked: u64,
    /// The key had been revoked (by its owner): it stays revoked.
    pub revoked_before: bool,
}

/// The bootstrap key (`SYNCWAY_AUTH__BOOTSTRAP_API_KEY`): an operator key of
/// the operator organization (`organization`, made if missing). Bootstrap keys made from other values are
/// revoked; a bootstrap key revoked by its owner is not revived. Idempotent,
/// so every API process runs it at start-up.
pub async fn ensure_bootstrap(
    client: &impl GenericClient,
    key: &str,
    organization: &str,
) -> Result<Bootstrap, StoreError> {
    let organization_id = crate::organizations::ensure(client, organization).await?;
    let hash = digest(key);
    client
        .execute(
            "INSERT INTO api_keys (id, organization_id, key_hash, name, prefix, role, bootstrap)
             VALUES ($1, $2, $3, 'bootstrap', $4, 'operator', true)
             ON CONFLICT (key_hash) DO NOTHING",
            &[&Uuid::now_v7(), &organization_id, &hash, &key_prefix(key)],
        )
        .await?;
    let revoked = client
        .execute(
            "UPDATE api_keys SET revoked_at = now()
             WHERE bootstrap AND key_hash <> $1 AND revoked_at IS NULL",
            &[&hash],
        )
        .await?;
    let revoked_before = client
        .query_opt(
            "SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked_at IS NOT NULL",
            &[&hash],
        )
        .await?
        .is_some();
    Ok(Bootstrap {
        organization_id,
        revoked,
        revoked_before,
    })
}

/// Who a key is, live or not.
#[derive(Debug, Clone)]
pub struct KeyIdentity {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub prefix: String,
    pub role: String,
}

/// Who a key is, live or not (revoked and expired keys too): the audit
/// log records refused attempts with the key they were made with.
pub async fn identify(
    client: &impl GenericClient,
    digest: &[u8],
) -> Result<Option<KeyIdentity>, StoreError> {
    let row = client
        .query_opt(
            "SELECT id, organization_id, prefix, role FROM api_keys WHERE key_hash = $1",
            &[&digest],
        )
        .await?;
    row.map(|row| {
        Ok(KeyIdentity {
            id: row.try_get(0)?,
            organization_id: row.try_get(1)?,
            prefix: row.try_get(2)?,
            role: row.try_get(3)?,
        })
    })
    .transpose()
}
