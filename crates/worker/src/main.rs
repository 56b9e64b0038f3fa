//! `syncway-worker`: parses flags, loads settings, binds the metrics
//! listener, and runs [`syncway_worker::run`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use syncway_runtime::{Role, Settings, shutdown_signal, telemetry};

#[derive(Debug, Parser)]
#[command(name = "syncway-worker", version, about = "syncway sync-job worker")]
struct Cli {
    /// TOML configuration file (also SYNCWAY_CONFIG); environment variables
    /// SYNCWAY_<SECTION>__<KEY> override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(Role::Worker, cli.config.as_deref())?;
    telemetry::init_logging(&settings.log);
    let metrics = tokio::net::TcpListener::bind(&settings.metrics.listen)
        .await
        .with_context(|| format!("binding the metrics listener {}", settings.metrics.listen))?;
    syncway_worker::run(settings, metrics, shutdown_signal()).await
}
