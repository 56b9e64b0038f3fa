//! `syncway-bench scale`: the same stream of fixed-duration jobs on 1, 2
//! and 4 worker processes against one queue. Jobs sleep (a stub delay), so
//! on a 2-core machine the figure is how well workers share a queue (no
//! worker idle while work waits, no job run twice), not how much CPU they
//! add.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use serde_json::json;

use crate::processes::{BenchEnv, Services, build_binaries, create_connections};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Jobs per worker count.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// How long each job sleeps.
    #[arg(long, default_value_t = 200)]
    job_ms: u64,
    /// Worker processes to try, in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
    /// Each worker's concurrency.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_scale";

struct Row {
    workers: usize,
    seconds: f64,
    per_worker: Vec<f64>,
    twice: i64,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let mut rows = Vec::new();
    for &workers in &options.workers {
        let mut env = BenchEnv::create(&options.services).await?;
        let row = one(&options, &mut env, workers).await;
        env.destroy().await?;
        let row = row?;
        eprintln!("scale: {workers} worker(s): {:.1} s", row.seconds);
        rows.push(row);
    }
    let ideal = |workers: usize| {
        1000.0 / options.job_ms as f64 * f64::from(options.concurrency) * workers as f64
    };
    println!();
    println!(
        "syncway scale: {} jobs of {} ms each (sleep), concurrency {} per worker",
        options.jobs, options.job_ms, options.concurrency
    );
    println!(
        "| workers | jobs/s | speed-up vs 1 | of the sleep-bound ideal | jobs per worker | run twice |"
    );
    println!("|---|---|---|---|---|---|");
    let base = rows.first().map(|r| options.jobs as f64 / r.seconds);
    for row in &rows {
        let rate = options.jobs as f64 / row.seconds;
        let per_worker: Vec<String> = row.per_worker.iter().map(|n| format!("{n:.0}")).collect();
        println!(
            "| {} | {rate:.1} | {:.2}x | {:.2} | {} | {} |",
            row.workers,
            base.map_or(f64::NAN, |b| rate / b),
            rate / ideal(row.workers),
            per_worker.join(" / "),
            row.twice
        );
    }
    Ok(())
}

async fn one(options: &Options, env: &mut BenchEnv, workers: usize) -> anyhow::Result<Row> {
    let http = reqwest::Client::new();
    let api = env.start_api(&http, KEY, &[]).await?;
    let mut metrics = Vec::new();
    for _ in 0..workers {
        metrics.push(
            env.start_worker(
                &http,
                &[(
                    "SYNCWAY_WORKER__CONCURRENCY",
                    options.concurrency.to_string(),
                )],
            )
            .await?,
        );
    }
    let body = json!({"short_name": "stub",
                      "config": {"entity_count": 1, "delay_ms_per_entity": options.job_ms}});
    let connections = create_connections(&http, &api, KEY, "scale", body, options.jobs).await?;
    let started = Instant::now();
    let triggered: Vec<anyhow::Result<()>> = futures_util::stream::iter(&connections)
        .map(|connection| {
            let (http, api) = (&http, &api);
            async move {
                let response = http
                    .post(format!("{api}/source-connections/{connection}/run"))
                    .header("x-api-key", KEY)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "trigger: {}",
                    response.status()
                );
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    triggered.into_iter().collect::<anyhow::Result<()>>()?;
    let client = env.client().await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM sync_jobs WHERE status = 'completed'",
                &[],
            )
            .await?
            .get(0);
        if done as usize >= options.jobs {
            break;
        }
        if Instant::now() > deadline {
            bail!("{done} of {} jobs completed after 30 minutes", options.jobs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let twice: i64 = client
        .query_one("SELECT count(*) FROM sync_jobs WHERE attempt <> 1", &[])
        .await?
        .get(0);
    let mut per_worker = Vec::new();
    for url in &metrics {
        let text = http.get(url).send().await?.text().await?;
        let claimed = text
            .lines()
            .find_map(|line| line.strip_prefix("syncway_worker_jobs_claimed_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        per_worker.push(claimed);
    }
    Ok(Row {
        workers,
        seconds,
        per_worker,
        twice,
    })
}
