//! `syncway-bench schedules`: many continuous connections on one
//! `* * * * *` cron, three worker processes running the scheduler and the
//! jobs (stub, one entity). Over three ticks it prints how fast the ticks
//! were dispatched, the lag from each connection's due time to its job's
//! trigger, and checks exactly one job per connection per tick.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::processes::{BenchEnv, Services, build_binaries, create_connections};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Continuous connections, all on `* * * * *`.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Ticks checked.
    #[arg(long, default_value_t = 3)]
    ticks: usize,
    /// The schedulers' jitter cap (0: every connection due at the tick, to
    /// measure the dispatch rate itself).
    #[arg(long, default_value_t = 30)]
    jitter_seconds: u64,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_schedules";

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let mut env = BenchEnv::create(&options.services).await?;
    let outcome = measure(&options, &mut env).await;
    env.destroy().await?;
    outcome
}

async fn measure(options: &Options, env: &mut BenchEnv) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let jitter_seconds = options.jitter_seconds;
    let jitter = (
        "SYNCWAY_SCHEDULER__JITTER_SECONDS",
        jitter_seconds.to_string(),
    );
    let api = env
        .start_api(&http, KEY, std::slice::from_ref(&jitter))
        .await?;
    for _ in 0..3 {
        env.start_worker(
            &http,
            &[
                ("SYNCWAY_SCHEDULER__ENABLED", "true".into()),
                jitter.clone(),
                ("SYNCWAY_WORKER__CONCURRENCY", "16".into()),
            ],
        )
        .await?;
    }
    let body = json!({"short_name": "stub", "config": {"entity_count": 1},
                      "schedule": {"continuous": true, "cron": "* * * * *"}});
    let started = Instant::now();
    let connections =
        create_connections(&http, &api, KEY, "schedules", body, options.connections).await?;
    eprintln!(
        "schedules: {} connections created in {:.1} s",
        connections.len(),
        started.elapsed().as_secs_f64()
    );
    // The ticks after every connection exists.
    let now = Utc::now();
    let first = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .context("a minute")?
        + TimeDelta::minutes(1);
    let ticks: Vec<DateTime<Utc>> = (0..options.ticks)
        .map(|n| first + TimeDelta::minutes(n as i64))
        .collect();
    let window = TimeDelta::seconds(jitter_seconds.min(12) as i64) + TimeDelta::seconds(10);
    let last = *ticks.last().context("no ticks")?;
    let wait = (last + window - Utc::now()).to_std().unwrap_or_default();
    eprintln!(
        "schedules: waiting {:.0} s for {} ticks from {first}",
        wait.as_secs_f64(),
        ticks.len()
    );
    tokio::time::sleep(wait).await;
    let client = env.client().await?;
    // Every scheduled job should be there by now; let them finish.
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .query_one("SELECT count(*) FROM sync_jobs WHERE active", &[])
        .await?
        .get::<_, i64>(0)
        > 0
    {
        if Instant::now() > deadline {
            bail!("scheduled jobs still active two minutes after the last tick");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!();
    println!(
        "syncway schedules: {} continuous connections on `* * * * *`, 3 worker processes (scheduler + jobs), jitter cap {} s (at most 12 s for a per-minute cron)",
        connections.len(),
        jitter_seconds
    );
    println!(
        "| tick | jobs | duplicates | missed | dispatched/s (first to last trigger) | lag p50 | lag p99 | last trigger after tick | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut clean = true;
    for tick in &ticks {
        let rows = client
            .query(
                "SELECT source_connection_id, created_at, status FROM sync_jobs
                 WHERE trigger = 'schedule' AND scheduled_for = $1",
                &[tick],
            )
            .await?;
        let mut per_connection = std::collections::HashMap::<Uuid, usize>::new();
        let mut lags = Vec::with_capacity(rows.len());
        let mut triggers = Vec::with_capacity(rows.len());
        let mut failed = 0;
        for row in &rows {
            let connection: Uuid = row.get(0);
            let created: DateTime<Utc> = row.get(1);
            let status: String = row.get(2);
            *per_connection.entry(connection).or_default() += 1;
            let due = *tick
                + syncway_model::schedule::jitter(
                    connection,
                    Duration::from_secs(jitter_seconds),
                    TimeDelta::minutes(1),
                );
            lags.push((created - due).num_milliseconds());
            triggers.push(created);
            if status != "completed" {
                failed += 1;
            }
        }
        let duplicates: usize = per_connection.values().map(|n| n - 1).sum();
        let missed = connections
            .iter()
            .filter(|c| !per_connection.contains_key(c))
            .count();
        lags.sort_unstable();
        triggers.sort_unstable();
        let rate = match (triggers.first(), triggers.last()) {
            (Some(a), Some(b)) if b > a => {
                rows.len() as f64 / ((*b - *a).num_milliseconds() as f64 / 1000.0)
            }
            _ => f64::NAN,
        };
        let after_tick = triggers
            .last()
            .map(|t| (*t - *tick).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(f64::NAN);
        let at = |q: f64| {
            lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
                .map(|ms| *ms as f64 / 1000.0)
                .unwrap_or(f64::NAN)
        };
        println!(
            "| {} | {} | {duplicates} | {missed} | {rate:.0} | {:.2} s | {:.2} s | {after_tick:.1} s | {failed} |",
            tick.format("%H:%M"),
            rows.len(),
            at(0.5),
            at(0.99)
        );
        clean &= duplicates == 0
            && missed == 0
            && failed == 0
            && after_tick <= window.num_milliseconds() as f64 / 1000.0;
    }
    println!(
        "target: every connection triggered once per tick within 10 s of the tick plus the jitter window ({} s): {}",
        window.num_seconds(),
        if clean { "met" } else { "NOT met" }
    );
    Ok(())
}
