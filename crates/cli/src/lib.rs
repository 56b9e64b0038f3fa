//! `syncway`, the command line (CONTRACT.md §8): `dev` runs a whole local
//! system in one process; the other commands drive a running API
//! (`SYNCWAY_URL`, `SYNCWAY_API_KEY`), printing tables on a terminal and the
//! API's JSON when piped or with `--json`.
//!
//! Exit codes: 0 success (for `run --watch`, only a completed job); 1 the
//! API could not be reached or `dev` could not start; 2 usage errors; 3 the
//! API answered an error (its `detail` on stderr); 4 the watched job ended
//! failed or cancelled.

mod client;
mod commands;
pub mod dev;
mod output;
pub mod sse;
mod steering;
mod watch;
mod webhooks;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::{Api, CallError};
use output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "syncway",
    version,
    about = "Run syncway locally and drive its API"
)]
struct Cli {
    /// The API's base URL.
    #[arg(
        long,
        global = true,
        env = "SYNCWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The API key (x-api-key).
    #[arg(long, global = true, env = "SYNCWAY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print the API's JSON, even on a terminal.
    #[arg(long, global = true)]
    json: bool,
    /// Print only the id of what was made or started (for scripts).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Postgres and RabbitMQ checks, migrations, the API and two
    /// workers in this process, for development.
    Dev {
        /// TOML configuration file (as the other binaries take).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Collections: create, list.
    #[command(subcommand)]
    Collections(commands::CollectionCommand),
    /// Source connections: create, list, get, delete.
    #[command(subcommand)]
    Connections(commands::ConnectionCommand),
    /// Trigger a sync of a connection.
    Run {
        connection: String,
        /// A full sync, ignoring the stored cursor.
        #[arg(long)]
        full: bool,
        /// Follow the job to its end with live counts; exit 0 only when it
        /// completed.
        #[arg(long)]
        watch: bool,
    },
    /// Jobs: a connection's, newest first; or one job; or (`--timeline`)
    /// what happened to it, oldest first. Without a connection, a search of
    /// the organization's jobs by the filter flags (`--status failed
    /// --since 1h`); `jobs bulk` acts on what a filter matches.
    #[command(args_conflicts_with_subcommands = true)]
    Jobs {
        connection: Option<String>,
        job: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Show the job's timeline: claims, progress, retries, take-overs,
        /// cancels and its end.
        #[arg(long, requires = "job")]
        timeline: bool,
        #[command(flatten)]
        filter: steering::Filter,
        #[command(subcommand)]
        command: Option<steering::JobsCommand>,
    },
    /// Pause the key's organization (or, with an operator key, the whole
    /// deployment or another organization): nothing of it is claimed until
    /// it is resumed; triggers are still accepted.
    Pause {
        #[command(flatten)]
        scope: steering::Scope,
        #[arg(long)]
        reason: Option<String>,
        /// Cancel its running jobs too (otherwise they finish).
        #[arg(long)]
        cancel_running: bool,
    },
    /// Resume what `pause` paused; its held jobs start, oldest first.
    Resume {
        #[command(flatten)]
        scope: steering::Scope,
    },
    /// The pauses that hold the key's organization (`--all`: every pause).
    Pauses {
        #[arg(long)]
        all: bool,
    },
    /// Cancel a job.
    Cancel { connection: String, job: String },
    /// Webhook subscriptions and messages: create, list, get, delete,
    /// messages, recover.
    #[command(subcommand)]
    Webhooks(webhooks::WebhookCommand),
}

/// Exit codes beyond clap's 2 for usage errors.
pub const EXIT_UNREACHABLE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_API_ERROR: u8 = 3;
pub const EXIT_JOB_FAILED: u8 = 4;

/// Reports a failed call on stderr; its exit code.
fn report(error: &CallError) -> ExitCode {
    eprintln!("error: {error}");
    match error {
        CallError::Api { .. } => ExitCode::from(EXIT_API_ERROR),
        CallError::Transport(_) => ExitCode::from(EXIT_UNREACHABLE),
        CallError::Usage(_) => ExitCode::from(EXIT_USAGE),
    }
}

/// The whole binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    // reqwest is built without a default TLS provider (see ARCHITECTURE.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let format = if cli.quiet {
        Format::Id
    } else if cli.json || !std::io::stdout().is_terminal() {
        Format::Json
    } else {
        Format::Human
    };
    let api = Api::new(&cli.url, cli.api_key.clone());
    let outcome = match cli.command {
        Command::Dev { config } => return dev::main(config).await,
        Command::Collections(command) => commands::collections(&api, format, command).await,
        Command::Connections(command) => commands::connections(&api, format, command).await,
        Command::Jobs {
            connection,
            job,
            limit,
            timeline,
            filter,
            command,
        } => match (command, connection, job) {
            (Some(command), _, _) => steering::jobs(&api, format, command).await,
            (None, None, _) => steering::search(&api, format, &filter, limit).await,
            (None, Some(connection), Some(job)) if timeline => {
                commands::timeline(&api, format, &connection, &job).await
            }
            (None, Some(connection), Some(job)) => {
                commands::job(&api, format, &connection, &job).await
            }
            (None, Some(connection), None) => {
                commands::jobs(&api, format, &connection, limit).await
            }
        },
        Command::Pause {
            scope,
            reason,
            cancel_running,
        } => steering::pause(&api, format, &scope, reason, cancel_running).await,
        Command::Resume { scope } => steering::resume(&api, format, &scope).await,
        Command::Pauses { all } => steering::pauses(&api, format, all).await,
        Command::Webhooks(command) => webhooks::webhooks(&api, format, command).await,
        Command::Cancel { connection, job } => {
            commands::cancel(&api, format, &connection, &job).await
        }
        Command::Run {
            connection,
            full,
            watch,
        } => return watch::run(&api, format, &connection, full, watch).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}
