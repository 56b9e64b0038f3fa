//! The operator's commands of `syncway-api` (CONTRACT.md §7): organizations
//! and their keys, straight against the database. A key is printed once,
//! when it is made; only its digest is stored.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use syncway_model::KeyRole;
use syncway_model::names::{MAX_NAME_LEN, display_name};
use syncway_runtime::Settings;
use syncway_store::api_keys::{self, NewKey};
use syncway_store::organizations;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Make an organization; prints its id and a first (member) key, once.
    Create {
        /// 1 to 255 characters, unique.
        name: String,
    },
    /// List organizations and how many live keys each has.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a key; prints it once.
    Create {
        /// The organization, by id or name.
        #[arg(long)]
        org: String,
        /// An operator key (the /admin/* routes, and making operator keys).
        #[arg(long)]
        operator: bool,
        #[arg(long, default_value = "key")]
        name: String,
        /// The key stops working after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List an organization's keys that are not revoked (never the keys).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key at once, in every API process.
    Revoke {
        #[arg(long)]
        org: String,
        /// The key's id (from `keys list`).
        id: Uuid,
    },
}

async fn client(settings: &Settings) -> anyhow::Result<deadpool_postgres::Object> {
    let pool = syncway_store::open(
        &syncway_store::PoolSettings::new(&settings.database.url, 2),
        settings.database.migrate,
    )
    .await
    .context("opening the database (migrations)")?;
    pool.get().await.context("connecting to Postgres")
}

fn checked_name(name: &str) -> anyhow::Result<&str> {
    match display_name(name) {
        Some(name) if !name.contains('\0') => Ok(name),
        _ => bail!("a name must be 1 to {MAX_NAME_LEN} characters, without NUL"),
    }
}

async fn organization(client: &deadpool_postgres::Object, org: &str) -> anyhow::Result<Uuid> {
    organizations::find(client, org)
        .await?
        .with_context(|| format!("no organization {org:?} (give its id or name)"))
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), |at| at.to_rfc3339())
}

pub async fn org(settings: &Settings, command: OrgCommand) -> anyhow::Result<()> {
    let client = client(settings).await?;
    match command {
        OrgCommand::Create { name } => {
            let name = checked_name(&name)?;
            let Some(id) = organizations::create(&client, name).await? else {
                bail!("an organization named {name:?} exists already");
            };
            let new = NewKey {
                organization_id: id,
                name: "first",
                role: KeyRole::Member,
                expires_at: None,
            };
            let (_, key) = api_keys::create(&client, &new).await?;
            println!("organization_id\t{id}");
            println!("api_key\t{key}");
            eprintln!("The key is shown only now: store it.");
        }
        OrgCommand::List => {
            println!("id\tname\tcreated_at\tlive_keys");
            for org in organizations::list(&client).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    org.id,
                    org.name,
                    org.created_at.to_rfc3339(),
                    org.live_keys
                );
            }
        }
    }
    Ok(())
}

pub async fn keys(settings: &Settings, command: KeyCommand) -> anyhow::Result<()> {
    let client = client(settings).await?;
    match command {
        KeyCommand::Create {
            org,
            operator,
            name,
            expires_in_days,
        } => {
            let organization_id = organization(&client, &org).await?;
            let operator_organization = &settings.auth.operator_organization;
            if operator
                && organizations::find(&client, operator_organization).await?
                    != Some(organization_id)
            {
                bail!(
                    "operator keys belong to the operator organization \
                     {operator_organization:?} only (SYNCWAY_AUTH__OPERATOR_ORGANIZATION); \
                     {org:?} may have member keys"
                );
            }
            let new = NewKey {
                organization_id,
                name: checked_name(&name)?,
                role: if operator {
                    KeyRole::Operator
                } else {
                    KeyRole::Member
                },
                expires_at: expires_in_days
                    .map(|days| Utc::now() + chrono::Duration::days(i64::from(days))),
            };
            let (key, secret) = api_keys::create(&client, &new).await?;
            println!("id\t{}", key.id);
            println!("role\t{}", key.role);
            println!("api_key\t{secret}");
            eprintln!("The key is shown only now: store it.");
        }
        KeyCommand::List { org } => {
            let organization = organization(&client, &org).await?;
            println!("id\tname\tprefix\trole\tcreated_at\texpires_at\tlast_used_at");
            for key in api_keys::list(&client, organization).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.name,
                    key.prefix,
                    key.role,
                    key.created_at.to_rfc3339(),
                    time(key.expires_at),
                    time(key.last_used_at)
                );
            }
        }
        KeyCommand::Revoke { org, id } => {
            let organization = organization(&client, &org).await?;
            if api_keys::revoke_by_id(&client, organization, id)
                .await?
                .is_none()
            {
                bail!("organization {org:?} has no live key {id}");
            }
            println!("revoked\t{id}");
        }
    }
    Ok(())
}
