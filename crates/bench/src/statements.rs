//! What Postgres spends its time on per job: `e2e --statements` runs the
//! benchmark on a private cluster with `pg_stat_statements` loaded (never
//! the machine's shared one, whose settings the bench does not own), counts
//! from the start of the measured phase, and prints each statement's calls,
//! execution and planning time per job.

use anyhow::Context;

use crate::chaos::servers::PrivatePostgres;

/// The settings of the private cluster: the extension, nested statements
/// (what triggers run) and planning time counted; durability as the
/// machine's cluster has it (fsync on).
const SETTINGS: &str = "shared_preload_libraries = 'pg_stat_statements'\n\
                        pg_stat_statements.track = all\n\
                        pg_stat_statements.track_planning = on\n\
                        shared_buffers = 128MB\n\
                        max_wal_size = 1GB\n";

/// Statements printed, the costliest first.
const SHOWN: i64 = 15;

/// Starts the private cluster (with room for the benchmark's pools).
pub fn start_cluster() -> anyhow::Result<PrivatePostgres> {
    PrivatePostgres::start_with(200, SETTINGS)
}

/// Makes the view readable in the benchmark's database and zeroes it: call
/// just before the measured phase.
pub async fn reset(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
             SELECT pg_stat_statements_reset();",
        )
        .await
        .context("resetting pg_stat_statements (is it loaded?)")
}

/// One statement's share of the measured phase.
#[derive(Debug)]
pub struct Statement {
    pub calls_per_job: f64,
    pub exec_ms_per_job: f64,
    pub plan_ms_per_job: f64,
    /// The statement's first line: its name comment for the store's SQL.
    pub text: String,
}

/// The benchmark database's statements since [`reset`], the costliest
/// (execution + planning) first.
pub async fn read(client: &tokio_postgres::Client, jobs: usize) -> anyhow::Result<Vec<Statement>> {
    let rows = client
        .query(
            "SELECT calls, total_exec_time, total_plan_time, query FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'
             ORDER BY total_exec_time + total_plan_time DESC LIMIT $1",
            &[&SHOWN],
        )
        .await
        .context("reading pg_stat_statements")?;
    let jobs = jobs.max(1) as f64;
    Ok(rows
        .iter()
        .map(|row| {
            let query: &str = row.get(3);
            let text = query
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("")
                .chars()
                .take(80)
                .collect::<String>()
                .replace('|', "/");
            Statement {
                calls_per_job: row.get::<_, i64>(0) as f64 / jobs,
                exec_ms_per_job: row.get::<_, f64>(1) / jobs,
                plan_ms_per_job: row.get::<_, f64>(2) / jobs,
                text,
            }
        })
        .collect())
}

/// Prints the statements as a Markdown table.
pub fn print(statements: &[Statement]) {
    println!();
    println!(
        "| statement (pg_stat_statements, private cluster) | calls/job | exec ms/job | plan ms/job |"
    );
    println!("|---|---|---|---|");
    for s in statements {
        println!(
            "| `{}` | {:.2} | {:.3} | {:.3} |",
            s.text, s.calls_per_job, s.exec_ms_per_job, s.plan_ms_per_job
        );
    }
    let exec: f64 = statements.iter().map(|s| s.exec_ms_per_job).sum();
    let plan: f64 = statements.iter().map(|s| s.plan_ms_per_job).sum();
    println!(
        "| these {} (nested ones counted twice) | | {exec:.3} | {plan:.3} |",
        statements.len()
    );
}
