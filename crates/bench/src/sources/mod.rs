//! `syncway-bench sync --source mysql|s3|postgres_cdc`: a full sync of a
//! real source through the real binaries, beside the source's own read
//! rate measured in the same run (a plain SELECT streamed to its end; a
//! LIST and a GET of every object, eight at a time, as the connector
//! fetches; logical decoding's own peek of the same changes), and for
//! `postgres_cdc` an incremental sync of as many new rows, read from the
//! slot. Beside both, `copy-limit.sh` in the same run: what a single COPY
//! writes into the store, the ceiling of any full sync whatever it reads.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::processes::{BenchEnv, build_binaries, measure_limit};
use crate::sync::{Api, KEY};

mod cdc;
mod mysql;
mod s3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    Stub,
    Mysql,
    S3,
    #[value(name = "postgres_cdc")]
    PostgresCdc,
}

/// A source made ready: what the connection needs, and the source's own
/// read rate of everything in it.
pub struct Prepared {
    pub short_name: &'static str,
    pub config: Value,
    pub credentials: Value,
    pub own_rate: f64,
    pub own_read: &'static str,
}

/// A second round of changes and the source's own rate of reading them
/// (`postgres_cdc`: new rows, read back by a peek of the slot).
pub struct Increment {
    pub rows: u64,
    pub own_rate: f64,
}

pub async fn run(options: &crate::sync::Options, kind: SourceKind) -> anyhow::Result<()> {
    build_binaries()?;
    let rows = options.source_rows.unwrap_or(match kind {
        SourceKind::S3 => 10_000,
        _ => 200_000,
    });
    let mut env = BenchEnv::create(&options.services).await?;
    let outcome = match kind {
        SourceKind::Mysql => {
            let source = mysql::Source::create(&options.mysql, rows).await?;
            let outcome = measure(
                options,
                &mut env,
                source.prepare().await?,
                rows,
                NO_INCREMENT,
            )
            .await;
            source.drop_database().await;
            outcome
        }
        SourceKind::S3 => {
            let source = s3::Source::create(&options.moto, rows).await?;
            measure(
                options,
                &mut env,
                source.prepare().await?,
                rows,
                NO_INCREMENT,
            )
            .await
        }
        SourceKind::PostgresCdc => {
            let source = cdc::Source::create(rows).await?;
            let prepared = source.prepare().await?;
            measure(
                options,
                &mut env,
                prepared,
                rows,
                Some(|| source.increment(rows)),
            )
            .await
        }
        SourceKind::Stub => unreachable!("the stub source runs in sync.rs"),
    };
    env.destroy().await?;
    outcome?.print(kind, rows);
    Ok(())
}

type NoIncrement = fn() -> std::future::Ready<anyhow::Result<Increment>>;
const NO_INCREMENT: Option<NoIncrement> = None;

struct Report {
    full: Duration,
    /// Entity rows a single COPY writes per second into this store (the
    /// ceiling of any full sync, whatever the source).
    limit: f64,
    own_rate: f64,
    own_read: &'static str,
    incremental: Option<(Duration, Increment)>,
}

impl Report {
    fn print(&self, kind: SourceKind, rows: u64) {
        let rate = rows as f64 / self.full.as_secs_f64();
        println!();
        println!("syncway sync --source {kind:?}: {rows} rows/objects, one worker");
        println!(
            "| figure | syncway | the source's own read (same run) | ratio | ratio to copy-limit.sh ({:.0}/s, same run) |",
            self.limit
        );
        println!("|---|---|---|---|---|");
        println!(
            "| full sync into an empty store | {:.2} s, {rate:.0}/s | {:.0}/s ({}) | {:.2} | {:.2} |",
            self.full.as_secs_f64(),
            self.own_rate,
            self.own_read,
            rate / self.own_rate,
            rate / self.limit
        );
        if let Some((took, increment)) = &self.incremental {
            let rate = increment.rows as f64 / took.as_secs_f64();
            println!(
                "| incremental, {} new rows from the slot | {:.2} s, {rate:.0}/s | {:.0}/s (peek of the slot) | {:.2} | {:.2} |",
                increment.rows,
                took.as_secs_f64(),
                increment.own_rate,
                rate / increment.own_rate,
                rate / self.limit
            );
        }
    }
}

async fn measure<F, Fut>(
    options: &crate::sync::Options,
    env: &mut BenchEnv,
    prepared: Prepared,
    rows: u64,
    increment: Option<F>,
) -> anyhow::Result<Report>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Increment>>,
{
    let limit = measure_limit(
        &options.services.limits.join("copy-limit.sh"),
        &[env.database_url(), options.limit_rows.to_string()],
        "limit_entities_per_s",
    )?;
    let http = reqwest::Client::new();
    let allow = [("SYNCWAY_CONNECTORS__ALLOW_CIDRS", "127.0.0.1/32".to_owned())];
    let api = env.start_api(&http, KEY, &allow).await?;
    env.start_worker(&http, &allow).await?;
    let client = Api {
        http: &http,
        base: &api,
    };
    client
        .call(
            "POST",
            "/collections",
            Some(json!({"name": "Bench", "readable_id": "bench"})),
        )
        .await?;
    let connection = client
        .call(
            "POST",
            "/source-connections",
            Some(json!({
                "short_name": prepared.short_name, "readable_collection_id": "bench",
                "config": prepared.config,
                "authentication": {"credentials": prepared.credentials},
                "schedule": {"continuous": true},
            })),
        )
        .await?["id"]
        .as_str()
        .context("no connection id")?
        .to_owned();
    let full = client
        .sync(&connection, false, [rows as i64, 0, 0])
        .await
        .context("the full sync")?;
    let incremental = match increment {
        None => None,
        Some(make) => {
            let increment = make().await?;
            let took = client
                .sync(&connection, false, [increment.rows as i64, 0, 0])
                .await
                .context("the incremental sync")?;
            Some((took, increment))
        }
    };
    Ok(Report {
        full,
        limit,
        own_rate: prepared.own_rate,
        own_read: prepared.own_read,
        incremental,
    })
}
