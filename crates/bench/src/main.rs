//! `syncway-bench`: measures syncway end to end on this machine, and prints
//! each figure beside the machine's physical limit measured in the same run.
//!
//! `cargo run --release -p syncway-bench -- e2e` builds and starts the real
//! binaries against the local Postgres and RabbitMQ (a fresh database and
//! AMQP namespace, removed afterwards), creates N stub connections of one
//! entity each, triggers one job on each over HTTP from concurrent clients,
//! waits until every job is terminal, and reports throughput and latencies.

mod chaos;
mod console;
mod cpu;
mod e2e;
mod events;
mod growth;
mod history;
mod lock_waits;
mod peer;
mod processes;
mod receiver;
mod scale;
mod schedules;
mod sources;
mod sql;
mod statements;
mod steering;
mod sync;
mod triggers;
mod webhooks;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "syncway-bench", about = "syncway benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trigger -> outbox -> RabbitMQ -> worker -> Postgres, end to end.
    E2e(e2e::Options),
    /// Job event streams: commit -> stream latency, Postgres cost per stream count.
    Events(events::Options),
    /// The statements every job costs, alone: the ceiling of `e2e`.
    Sql(sql::Options),
    /// One large sync: full, unchanged, incremental (beside copy-limit.sh);
    /// or a real source (`--source mysql|s3|postgres-cdc`) beside its own read.
    Sync(sync::Options),
    /// Faults on a stream of jobs across three workers; every job checked.
    Chaos(chaos::Options),
    /// Many connections on one cron: dispatch rate, lag, one job per tick.
    Schedules(schedules::Options),
    /// Fixed-duration jobs on 1, 2 and 4 workers: jobs/s, speed-up, balance.
    Scale(scale::Options),
    /// Costs as history grows (0, 3M, 30M terminal jobs), and retention.
    Growth(growth::Options),
    /// Manual runs ahead of a scheduled backlog, a bulk cancel, and job
    /// search over a long history.
    Steering(steering::Options),
    /// The console's pages with 3M jobs of history and 10,000 connections,
    /// and a job page's live progress.
    Console(console::Options),
    /// Job status changes delivered as signed webhooks: rate, latency, a
    /// failing and a hanging endpoint beside a healthy one, a killed worker.
    Webhooks(webhooks::Options),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    syncway_connectors::install_tls_provider();
    match Cli::parse().command {
        Command::E2e(options) => e2e::run(options).await,
        Command::Events(options) => events::run(options).await,
        Command::Sql(options) => sql::run(options).await,
        Command::Sync(options) => sync::run(options).await,
        Command::Chaos(options) => chaos::run(options).await,
        Command::Schedules(options) => schedules::run(options).await,
        Command::Scale(options) => scale::run(options).await,
        Command::Growth(options) => growth::run(options).await,
        Command::Webhooks(options) => webhooks::run(options).await,
        Command::Steering(options) => steering::run(options).await,
        Command::Console(options) => console::run(options).await,
    }
}
