//! `syncway-api`'s command line: parses flags, loads settings, and runs the
//! server ([`crate::run`]) or one of the operator's commands. `syncway-api
//! migrate` applies migrations and exits; `syncway-api org …` and
//! `syncway-api keys …` manage organizations and their API keys
//! ([`crate::commands`]).

use std::path::PathBuf;

use crate::commands::{self, KeyCommand, OrgCommand};
use anyhow::Context;
use clap::{Parser, Subcommand};
use syncway_runtime::{Role, Settings, shutdown_signal, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "syncway-api",
    version,
    about = "syncway HTTP API and outbox relay"
)]
struct Cli {
    /// TOML configuration file (also SYNCWAY_CONFIG); environment variables
    /// SYNCWAY_<SECTION>__<KEY> override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply database migrations and exit.
    Migrate,
    /// Organizations: create, list.
    #[command(subcommand)]
    Org(OrgCommand),
    /// API keys: create, list, revoke.
    #[command(subcommand)]
    Keys(KeyCommand),
}

/// The whole binary, after the runtime is made.
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(Role::Api, cli.config.as_deref())?;
    telemetry::init_logging(&settings.log);
    match cli.command {
        None => {}
        Some(Command::Migrate) => {
            let applied = syncway_store::migrate(&settings.database.url)
                .await
                .context("running migrations")?;
            tracing::info!(?applied, "migrations applied");
            return Ok(());
        }
        Some(Command::Org(command)) => return commands::org(&settings, command).await,
        Some(Command::Keys(command)) => return commands::keys(&settings, command).await,
    }
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("binding the API listener {}", settings.api.listen))?;
    let metrics = tokio::net::TcpListener::bind(&settings.metrics.listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", settings.metrics.listen))?;
    crate::run(settings, listener, metrics, shutdown_signal()).await
}
