//! The resource commands: collections, connections, jobs, cancel. Each is
//! one API call whose answer is printed.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Api, CallError};
use crate::output::{Format, print};

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Make a collection.
    Create {
        name: String,
        /// 3-64 of a-z, 0-9 and `-`; derived from the name when absent.
        #[arg(long)]
        readable_id: Option<String>,
    },
    /// The organization's collections.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Make a source connection.
    Create {
        /// The collection's readable id.
        #[arg(long)]
        collection: String,
        /// The connector: stub, postgres, local_files, http_json.
        #[arg(long)]
        short_name: String,
        #[arg(long)]
        name: Option<String>,
        /// The connector's config, as JSON.
        #[arg(long, conflicts_with = "config_file")]
        config: Option<String>,
        /// The connector's config, from a JSON file.
        #[arg(long)]
        config_file: Option<PathBuf>,
        /// Credentials, as JSON (stored sealed, never shown again).
        #[arg(long)]
        credentials: Option<String>,
        /// Incremental syncs from the stored cursor (scheduled every 5
        /// minutes unless --cron says otherwise).
        #[arg(long)]
        continuous: bool,
        /// A 5-field cron schedule.
        #[arg(long)]
        cron: Option<String>,
    },
    /// The organization's connections.
    List {
        /// Only this collection's (readable id).
        #[arg(long)]
        collection: Option<String>,
    },
    /// One connection.
    Get { connection: String },
    /// Delete a connection with its jobs and entities.
    Delete { connection: String },
}

const COLLECTION_COLUMNS: &[&str] = &["readable_id", "name", "status", "created_at"];
const CONNECTION_COLUMNS: &[&str] = &[
    "id",
    "name",
    "short_name",
    "readable_collection_id",
    "status",
    "entities.total_entities",
    "schedule.cursor_value",
    "schedule.next_run",
];
const LIST_COLUMNS: &[&str] = &[
    "id",
    "name",
    "short_name",
    "readable_collection_id",
    "status",
    "entity_count",
];
pub const JOB_COLUMNS: &[&str] = &[
    "id",
    "status",
    "entities_inserted",
    "entities_updated",
    "entities_deleted",
    "entities_failed",
    "started_at",
    "duration_seconds",
    "error",
    "waiting_reason.code",
];

/// A JSON object given on the command line (or read from a file).
fn object(what: &str, text: &str) -> Result<Value, CallError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(CallError::Usage(format!("{what} must be a JSON object"))),
        Err(error) => Err(CallError::Usage(format!(
            "{what} is not valid JSON: {error}"
        ))),
    }
}

pub async fn collections(
    api: &Api,
    format: Format,
    command: CollectionCommand,
) -> Result<(), CallError> {
    match command {
        CollectionCommand::Create { name, readable_id } => {
            let mut body = json!({"name": name});
            if let Some(id) = readable_id {
                body["readable_id"] = Value::String(id);
            }
            let answer = api.call(Method::POST, "/collections", Some(&body)).await?;
            print(format, &answer, COLLECTION_COLUMNS);
        }
        CollectionCommand::List => {
            let answer = api
                .call(Method::GET, "/collections?limit=1000", None)
                .await?;
            print(format, &answer, COLLECTION_COLUMNS);
        }
    }
    Ok(())
}

pub async fn connections(
    api: &Api,
    format: Format,
    command: ConnectionCommand,
) -> Result<(), CallError> {
    match command {
        ConnectionCommand::Create {
            collection,
            short_name,
            name,
            config,
            config_file,
            credentials,
            continuous,
            cron,
        } => {
            let mut body = Map::new();
            body.insert("short_name".into(), short_name.into());
            body.insert("readable_collection_id".into(), collection.into());
            if let Some(name) = name {
                body.insert("name".into(), name.into());
            }
            let config = match (config, config_file) {
                (Some(text), _) => Some(object("--config", &text)?),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path).map_err(|error| {
                        CallError::Usage(format!("cannot read {}: {error}", path.display()))
                    })?;
                    Some(object("--config-file", &text)?)
                }
                (None, None) => None,
            };
            if let Some(config) = config {
                body.insert("config".into(), config);
            }
            if let Some(credentials) = credentials {
                let credentials = object("--credentials", &credentials)?;
                body.insert("authentication".into(), json!({"credentials": credentials}));
            }
            if continuous || cron.is_some() {
                let mut schedule = json!({"continuous": continuous});
                if let Some(cron) = cron {
                    schedule["cron"] = Value::String(cron);
                }
                body.insert("schedule".into(), schedule);
            }
            let body = Value::Object(body);
            let answer = api
                .call(Method::POST, "/source-connections", Some(&body))
                .await?;
            print(format, &answer, CONNECTION_COLUMNS);
        }
        ConnectionCommand::List { collection } => {
            let path = match collection {
                Some(collection) => {
                    format!("/source-connections?limit=1000&collection={collection}")
                }
                None => "/source-connections?limit=1000".to_owned(),
            };
            let answer = api.call(Method::GET, &path, None).await?;
            print(format, &answer, LIST_COLUMNS);
        }
        ConnectionCommand::Get { connection } => {
            let path = format!("/source-connections/{connection}");
            let answer = api.call(Method::GET, &path, None).await?;
            print(format, &answer, CONNECTION_COLUMNS);
        }
        ConnectionCommand::Delete { connection } => {
            let path = format!("/source-connections/{connection}");
            let answer = api.call(Method::DELETE, &path, None).await?;
            print(format, &answer, CONNECTION_COLUMNS);
        }
    }
    Ok(())
}

pub async fn jobs(
    api: &Api,
    format: Format,
    connection: &str,
    limit: u32,
) -> Result<(), CallError> {
    let path = format!("/source-connections/{connection}/jobs?limit={limit}");
    let answer = api.call(Method::GET, &path, None).await?;
    print(format, &answer, JOB_COLUMNS);
    Ok(())
}

pub async fn job(api: &Api, format: Format, connection: &str, job: &str) -> Result<(), CallError> {
    let path = format!("/source-connections/{connection}/jobs/{job}");
    let answer = api.call(Method::GET, &path, None).await?;
    print(format, &answer, JOB_COLUMNS);
    Ok(())
}

const TIMELINE_COLUMNS: &[&str] = &["at", "kind", "attempt", "worker_id", "message"];

/// A job's whole timeline, page after page; as JSON, one body with every
/// item (and `next` null).
pub async fn timeline(
    api: &Api,
    format: Format,
    connection: &str,
    job: &str,
) -> Result<(), CallError> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/source-connections/{connection}/jobs/{job}/timeline?limit=1000");
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let answer = api.call(Method::GET, &path, None).await?;
        let page: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        if let Some(page_items) = page["items"].as_array() {
            items.extend(page_items.iter().cloned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let body = match format {
        Format::Human => Value::Array(items),
        _ => json!({"items": items, "next": null}),
    };
    print(format, &body.to_string(), TIMELINE_COLUMNS);
    Ok(())
}

pub async fn cancel(
    api: &Api,
    format: Format,
    connection: &str,
    job: &str,
) -> Result<(), CallError> {
    let path = format!("/source-connections/{connection}/jobs/{job}/cancel");
    let answer = api.call(Method::POST, &path, None).await?;
    print(format, &answer, JOB_COLUMNS);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::render;

    #[test]
    fn a_connection_s_table_shows_its_cursor_and_entity_count() {
        let connection = json!({
            "id": "7f9c0e1e-0000-4000-8000-000000000001", "name": "stub", "short_name": "stub",
            "readable_collection_id": "demo", "status": "active",
            "entities": {"total_entities": 100000},
            "schedule": {"cursor_value": 99999, "next_run": null},
        });
        let table = render(Format::Human, &connection.to_string(), CONNECTION_COLUMNS);
        let mut lines = table.lines();
        let header = lines.next().expect("a header");
        let row = lines.next().expect("a row");
        assert!(header.contains("cursor_value"), "{table}");
        assert!(header.contains("total_entities"), "{table}");
        assert!(row.contains("99999") && row.contains("100000"), "{table}");
    }
}
