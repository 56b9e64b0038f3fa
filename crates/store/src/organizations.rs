//! Organizations: the tenants. Every object belongs to one.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

/// Name of the unique constraint on organization names.
pub const NAME_UNIQUE: &str = "organizations_name_key";

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Keys that are neither revoked nor expired.
    pub live_keys: i64,
}

/// The organization named `name`, made if missing.
pub async fn ensure(client: &impl GenericClient, name: &str) -> Result<Uuid, StoreError> {
    client
        .execute(
            "INSERT INTO organizations (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&Uuid::now_v7(), &name],
        )
        .await?;
    Ok(client
        .query_one("SELECT id FROM organizations WHERE name = $1", &[&name])
        .await?
        .get(0))
}

/// Makes an organization; `None` when the name is taken.
pub async fn create(client: &impl GenericClient, name: &str) -> Result<Option<Uuid>, StoreError> {
    let id = Uuid::now_v7();
    let inserted = client
        .execute(
            "INSERT INTO organizations (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&id, &name],
        )
        .await?;
    Ok((inserted == 1).then_some(id))
}

/// Every organization, oldest first.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Organization>, StoreError> {
    let rows = client
        .query(
            "SELECT o.id, o.name, o.created_at,
                    count(k.id) FILTER (WHERE k.revoked_at IS NULL
                                          AND (k.expires_at IS NULL OR k.expires_at > now()))
             FROM organizations o LEFT JOIN api_keys k ON k.organization_id = o.id
             GROUP BY o.id ORDER BY o.created_at, o.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Organization {
            id: row.get(0),
            name: row.get(1),
            created_at: row.get(2),
            live_keys: row.get(3),
        })
        .collect())
}

/// An organization by its id (any case of the UUID) or its name.
pub async fn find(
    client: &impl GenericClient,
    id_or_name: &str,
) -> Result<Option<Uuid>, StoreError> {
    let row = match Uuid::parse_str(id_or_name) {
        Ok(id) => {
            client
                .query_opt("SELECT id FROM organizations WHERE id = $1", &[&id])
                .await?
        }
        Err(_) => {
            client
                .query_opt(
                    "SELECT id FROM organizations WHERE name = $1",
                    &[&id_or_name],
                )
                .await?
        }
    };
    Ok(row.map(|row| row.get(0)))
}
