//! `syncway-api`: parses flags, loads settings, binds, and runs
//! [`syncway_api::run`]. `syncway-api migrate` applies migrations and exits.

use std::path::PathBuf;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(Role::Api, cli.config.as_deref())?;
    telemetry::init_logging(&settings.log);
    if let Some(Command::Migrate) = cli.command {
        let applied = syncway_store::migrate(&settings.database.url)
            .await
            .context("running migrations")?;
        tracing::info!(?applied, "migrations applied");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(&settings.api.listen)
        .await
        .with_context(|| format!("binding the API listener {}", settings.api.listen))?;
    let metrics = tokio::net::TcpListener::bind(&settings.metrics.listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", settings.metrics.listen))?;
    syncway_api::run(settings, listener, metrics, shutdown_signal()).await
}
