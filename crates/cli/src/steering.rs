//! Steering from the command line (CONTRACT.md §11): job search
//! (`syncway jobs --status failed --since 1h`), bulk actions (`syncway jobs
//! bulk cancel --status pending`, followed to their end), and pauses
//! (`syncway pause`, `syncway resume`, `syncway pauses`).

use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Api, CallError};
use crate::commands::JOB_COLUMNS;
use crate::output::{Format, print};

/// A job filter (every flag optional).
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// pending, running, completed, failed, cancelling or cancelled.
    #[arg(long)]
    status: Option<String>,
    /// The connector's short name (http_json, postgres, ...).
    #[arg(long = "source")]
    short_name: Option<String>,
    /// api or schedule.
    #[arg(long)]
    trigger: Option<String>,
    #[arg(long)]
    error_category: Option<String>,
    /// Only jobs created within this long (`30m`, `1h`, `2d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Every organization's jobs (operator keys).
    #[arg(long)]
    all: bool,
    /// With `--all`: only this organization's.
    #[arg(long, requires = "all")]
    organization: Option<String>,
}

impl Filter {
    /// The filter's fields as the API names them.
    fn fields(&self) -> Result<Map<String, Value>, CallError> {
        let mut fields = Map::new();
        let mut put = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                fields.insert(name.to_owned(), Value::from(value.as_str()));
            }
        };
        put("status", &self.status);
        put("short_name", &self.short_name);
        put("trigger", &self.trigger);
        put("error_category", &self.error_category);
        put("organization_id", &self.organization);
        if let Some(since) = self.since {
            let since = chrono::Duration::from_std(since)
                .map_err(|_| CallError::Usage("--since is too long".into()))?;
            let after = chrono::Utc::now() - since;
            fields.insert("created_after".into(), Value::from(after.to_rfc3339()));
        }
        Ok(fields)
    }

    fn prefix(&self) -> &'static str {
        if self.all { "/admin" } else { "" }
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Act on every job the filter matches, on the server, and follow the
    /// task to its end: cancel (pending and running jobs), retry (the
    /// connections of failed jobs) or run (each matching connection once).
    Bulk {
        #[arg(value_parser = ["cancel", "retry", "run"])]
        action: String,
        #[command(flatten)]
        filter: Filter,
        /// Only count what it would act on.
        #[arg(long)]
        dry_run: bool,
        /// Print the task and return without following it.
        #[arg(long)]
        no_wait: bool,
    },
}

/// `syncway jobs [filters]`: the key's organization's jobs (every
/// organization's with `--all`), newest first.
pub async fn search(
    api: &Api,
    format: Format,
    filter: &Filter,
    limit: u32,
) -> Result<(), CallError> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in filter.fields()? {
        query.append_pair(&name, value.as_str().unwrap_or_default());
    }
    query.append_pair("limit", &limit.to_string());
    let path = format!("{}/jobs?{}", filter.prefix(), query.finish());
    let answer = api.call(Method::GET, &path, None).await?;
    if format == Format::Json {
        print(format, &answer, JOB_COLUMNS);
        return Ok(());
    }
    let page: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    let items = serde_json::to_string(&page["items"]).unwrap_or_default();
    print(format, &items, SEARCH_COLUMNS);
    Ok(())
}

/// A search's columns: the job's, with its connection and why it waits.
const SEARCH_COLUMNS: &[&str] = &[
    "id",
    "source_connection_id",
    "status",
    "trigger",
    "entities_inserted",
    "started_at",
    "error_category",
    "waiting_reason.code",
];

const TASK_COLUMNS: &[&str] = &["id", "action", "status", "matched", "done", "failed"];

pub async fn jobs(api: &Api, format: Format, command: JobsCommand) -> Result<(), CallError> {
    let JobsCommand::Bulk {
        action,
        filter,
        dry_run,
        no_wait,
    } = command;
    let body = json!({"action": action, "filter": filter.fields()?, "dry_run": dry_run});
    let prefix = filter.prefix();
    let answer = api
        .call(Method::POST, &format!("{prefix}/jobs/bulk"), Some(&body))
        .await?;
    let submitted: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    let Some(task_id) = submitted["task_id"].as_str().filter(|_| !no_wait) else {
        print(format, &answer, &["task_id", "matched"]);
        return Ok(());
    };
    let path = format!("{prefix}/tasks/{task_id}");
    loop {
        let answer = api.call(Method::GET, &path, None).await?;
        let task: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        if task["status"] != "running" {
            print(format, &answer, TASK_COLUMNS);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whose pause: the key's organization's (by default), the deployment's,
/// or (operator keys) another organization's.
#[derive(Debug, Clone, Default, Args)]
pub struct Scope {
    /// The whole deployment (operator keys).
    #[arg(long, conflicts_with = "organization")]
    all: bool,
    /// An organization by id (operator keys).
    #[arg(long)]
    organization: Option<String>,
}

impl Scope {
    fn path(&self) -> String {
        match (&self.organization, self.all) {
            (Some(organization), _) => format!("/admin/pauses/organizations/{organization}"),
            (None, true) => "/admin/pauses/all".to_owned(),
            (None, false) => "/pauses/organization".to_owned(),
        }
    }
}

const PAUSE_COLUMNS: &[&str] = &[
    "scope",
    "organization_id",
    "reason",
    "created_at",
    "created_by_key_prefix",
];

/// `syncway pause [--all | --organization ID] [--reason R] [--cancel-running]`.
pub async fn pause(
    api: &Api,
    format: Format,
    scope: &Scope,
    reason: Option<String>,
    cancel_running: bool,
) -> Result<(), CallError> {
    let body = json!({"reason": reason.unwrap_or_default()});
    let path = format!("{}?cancel_running={cancel_running}", scope.path());
    let answer = api.call(Method::PUT, &path, Some(&body)).await?;
    print(format, &answer, PAUSE_COLUMNS);
    Ok(())
}

/// `syncway resume [--all | --organization ID]`.
pub async fn resume(api: &Api, format: Format, scope: &Scope) -> Result<(), CallError> {
    let answer = api.call(Method::DELETE, &scope.path(), None).await?;
    print(format, &answer, PAUSE_COLUMNS);
    Ok(())
}

/// `syncway pauses [--all]`: the pauses that hold the key's organization,
/// or (operator keys) every pause.
pub async fn pauses(api: &Api, format: Format, all: bool) -> Result<(), CallError> {
    let path = if all { "/admin/pauses" } else { "/pauses" };
    let answer = api.call(Method::GET, path, None).await?;
    print(format, &answer, PAUSE_COLUMNS);
    Ok(())
}
