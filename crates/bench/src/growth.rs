//! `growth`: what a long history costs. One stack, one run: with an empty
//! history, then after terminal jobs are added directly (as fast as
//! Postgres takes them) across many connections, it measures Postgres CPU
//! while syncway idles, end-to-end jobs/s, trigger p99, a connection's jobs
//! list and a job's timeline p99, and `/admin/queue` latency; at the end,
//! the retention loop's removal rate while the e2e load runs, and what that
//! does to trigger p99 beside the spread of the runs without it.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use uuid::Uuid;

use crate::cpu::CpuSnapshot;
use crate::processes::{BenchEnv, Services, build_binaries, create_connections, metric};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Connections the history is spread across (and jobs per e2e round).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// History sizes to measure at, in terminal jobs, ascending.
    #[arg(long, value_delimiter = ',', default_value = "0,3000000,30000000")]
    histories: Vec<u64>,
    /// Days the added history spans (ending now); retention's job_days is 30.
    #[arg(long, default_value_t = 40)]
    history_days: u32,
    /// Seconds of idle to measure Postgres CPU over.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Concurrent HTTP clients triggering.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Jobs the worker runs at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// e2e rounds at each size (their spread is the noise).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_growth_key";

struct Row {
    history: u64,
    idle_cpu_percent: f64,
    jobs_per_s: Vec<f64>,
    trigger_p99_ms: Vec<f64>,
    list_p99_ms: f64,
    timeline_p99_ms: Option<f64>,
    queue_p99_ms: f64,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let mut env = BenchEnv::create(&options.services).await?;
    let outcome = measure(&options, &mut env).await;
    env.destroy().await?;
    outcome
}

async fn measure(options: &Options, env: &mut BenchEnv) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.clients * 2)
        .build()?;
    let api = env
        .start_api(
            &http,
            KEY,
            &[("SYNCWAY_METRICS__SNAPSHOT_INTERVAL_MS", "5000".into())],
        )
        .await?;
    let worker_vars = [
        (
            "SYNCWAY_WORKER__CONCURRENCY",
            options.concurrency.to_string(),
        ),
        ("SYNCWAY_RETENTION__ENABLED", "false".to_owned()),
        ("SYNCWAY_WEBHOOKS__ENABLED", "false".to_owned()),
    ];
    env.start_worker(&http, &worker_vars).await?;
    let body = json!({"short_name": "stub", "config": {"entity_count": 1}});
    let connections =
        create_connections(&http, &api, KEY, "growth", body, options.connections).await?;
    let db = env.client().await?;
    let has_timeline: bool = db
        .query_one("SELECT to_regclass('job_timeline') IS NOT NULL", &[])
        .await?
        .get(0);
    let mut rows = Vec::new();
    let mut added = 0;
    for &history in &options.histories {
        if history > added {
            let started = Instant::now();
            let shape = crate::history::Shape {
                span_days: options.history_days,
                total: options.histories.iter().copied().max().unwrap_or(history),
                mixed: false,
            };
            crate::history::load(&db, &connections, added, history, &shape, has_timeline).await?;
            eprintln!(
                "history: {} terminal jobs added in {:.0} s",
                history - added,
                started.elapsed().as_secs_f64()
            );
            added = history;
        }
        for settle in ["VACUUM ANALYZE", "CHECKPOINT"] {
            db.batch_execute(settle).await?;
        }
        let mut row = Row {
            history,
            idle_cpu_percent: idle_cpu(options.idle_seconds).await,
            jobs_per_s: Vec::new(),
            trigger_p99_ms: Vec::new(),
            list_p99_ms: 0.0,
            timeline_p99_ms: None,
            queue_p99_ms: 0.0,
        };
        for _ in 0..options.rounds {
            let (rate, p99) = e2e_round(&http, &api, &db, &connections, options.clients).await?;
            row.jobs_per_s.push(rate);
            row.trigger_p99_ms.push(p99);
        }
        let reads = reads(&http, &api, &db, &connections, has_timeline).await?;
        (row.list_p99_ms, row.timeline_p99_ms, row.queue_p99_ms) = reads;
        eprintln!("measured at {history} jobs");
        rows.push(row);
    }
    let retention = retention_under_load(env, &http, &api, &db, &connections, options).await?;
    print(options, &rows, &retention);
    Ok(())
}

/// Postgres CPU, in percent of one core, while nothing runs.
async fn idle_cpu(seconds: u64) -> f64 {
    // Let the snapshot refresher and autovacuum settle after the load.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = CpuSnapshot::take();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let per = CpuSnapshot::take().per_job_since(&before, 1);
    let ms = per
        .iter()
        .find(|(group, _)| group == "postgres")
        .map_or(0.0, |(_, ms)| *ms);
    ms / 1000.0 / seconds as f64 * 100.0
}

/// One job per connection, triggered by `clients` clients; returns jobs/s
/// (trigger of the first to the end of the last) and trigger p99 (ms).
async fn e2e_round(
    http: &reqwest::Client,
    api: &str,
    db: &tokio_postgres::Client,
    connections: &[Uuid],
    clients: usize,
) -> anyhow::Result<(f64, f64)> {
    let triggered = crate::triggers::trigger_all(http, api, KEY, connections, clients).await?;
    let (elapsed, trigger) = (triggered.elapsed, triggered.latencies);
    let started = Instant::now() - elapsed;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Through the partial index on `active`: nothing here reads history.
    let active = db
        .prepare("SELECT count(*) FROM sync_jobs WHERE active")
        .await?;
    loop {
        let left: i64 = db.query_one(&active, &[]).await?.get(0);
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} jobs still active after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = connections.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, trigger.value_at_quantile(0.99) as f64 / 1000.0))
}

/// p99 of a connection's jobs list, a job's timeline and `/admin/queue`.
async fn reads(
    http: &reqwest::Client,
    api: &str,
    db: &tokio_postgres::Client,
    connections: &[Uuid],
    has_timeline: bool,
) -> anyhow::Result<(f64, Option<f64>, f64)> {
    let mut list = Histogram::<u64>::new(3)?;
    let mut timeline = Histogram::<u64>::new(3)?;
    let mut queue = Histogram::<u64>::new(3)?;
    let timed = |path: String| async move {
        let request = http.get(format!("{api}{path}")).header("x-api-key", KEY);
        crate::processes::timed_request(request, &path).await
    };
    for connection in connections.iter().step_by((connections.len() / 200).max(1)) {
        list.record(timed(format!("/source-connections/{connection}/jobs?limit=20")).await?)?;
        if has_timeline {
            let job: Uuid = db
                .query_one(
                    "SELECT id FROM sync_jobs WHERE source_connection_id = $1
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                    &[connection],
                )
                .await?
                .get(0);
            let path = format!("/source-connections/{connection}/jobs/{job}/timeline");
            timeline.record(timed(path).await?)?;
        }
    }
    for _ in 0..50 {
        queue.record(timed("/admin/queue".to_owned()).await?)?;
    }
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    Ok((
        p99(&list),
        has_timeline.then(|| p99(&timeline)),
        p99(&queue),
    ))
}

struct Retention {
    rows_per_s: f64,
    trigger_p99_ms: f64,
    jobs_per_s: f64,
    longest_lock_wait_ms: f64,
}

/// A worker with retention on beside the e2e load: its removal rate, the
/// round's trigger p99, and the longest lock wait any session showed.
async fn retention_under_load(
    env: &mut BenchEnv,
    http: &reqwest::Client,
    api: &str,
    db: &tokio_postgres::Client,
    connections: &[Uuid],
    options: &Options,
) -> anyhow::Result<Option<Retention>> {
    // The same stack as the measured rounds, its one worker now with
    // retention on: started again in its place (its jobs have all ended).
    env.signal("syncway-worker", 0, "-KILL")?;
    let metrics = env
        .start_worker(
            http,
            &[
                (
                    "SYNCWAY_WORKER__CONCURRENCY",
                    options.concurrency.to_string(),
                ),
                ("SYNCWAY_RETENTION__JOB_DAYS", "30".to_owned()),
                ("SYNCWAY_WEBHOOKS__ENABLED", "false".to_owned()),
            ],
        )
        .await?;
    let name = "syncway_retention_removed_total{table=\"sync_jobs\"}";
    let removed = |http: &reqwest::Client| {
        let (http, metrics) = (http.clone(), metrics.clone());
        async move { metric(&http, &metrics, name).await.unwrap_or(0.0) }
    };
    // Its first batch (cold caches after the load) before the measured round.
    let first = Instant::now();
    while removed(http).await == 0.0 {
        if first.elapsed() > Duration::from_secs(600) {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "retention: first batch removed {:.1} s after the worker started",
        first.elapsed().as_secs_f64()
    );
    let waits = crate::lock_waits::LockWaits::watch(env.database_url()).await?;
    let before = removed(http).await;
    let started = Instant::now();
    let (jobs_per_s, trigger_p99_ms) =
        e2e_round(http, api, db, connections, options.clients).await?;
    let rows = removed(http).await - before;
    let longest = waits.stop().await;
    if rows <= 0.0 {
        return Ok(None);
    }
    Ok(Some(Retention {
        rows_per_s: rows / started.elapsed().as_secs_f64(),
        trigger_p99_ms,
        jobs_per_s,
        longest_lock_wait_ms: longest,
    }))
}

fn print(options: &Options, rows: &[Row], retention: &Option<Retention>) {
    let spread = |values: &[f64]| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        (min, max)
    };
    println!();
    println!(
        "syncway growth: {} connections, 1 worker x {}, {} HTTP clients, {} e2e rounds per size",
        options.connections, options.concurrency, options.clients, options.rounds
    );
    println!(
        "| terminal jobs | idle Postgres CPU | e2e jobs/s (min-max) | trigger p99 ms (min-max) | jobs list p99 | timeline p99 | /admin/queue p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let empty = rows.first();
    for row in rows {
        let (rate_min, rate_max) = spread(&row.jobs_per_s);
        let (p99_min, p99_max) = spread(&row.trigger_p99_ms);
        let ratio = empty.map_or(String::new(), |empty| {
            let (base, _) = spread(&empty.jobs_per_s);
            format!(" ({:.2}x empty)", rate_min / base)
        });
        println!(
            "| {} | {:.2}% | {rate_min:.0}-{rate_max:.0}{ratio} | {p99_min:.1}-{p99_max:.1} | {:.1} ms | {} | {:.1} ms |",
            row.history,
            row.idle_cpu_percent,
            row.list_p99_ms,
            row.timeline_p99_ms
                .map_or("n/a".to_owned(), |ms| format!("{ms:.1} ms")),
            row.queue_p99_ms,
        );
    }
    match (retention, rows.last()) {
        (Some(r), Some(last)) => {
            let (p99_min, p99_max) = spread(&last.trigger_p99_ms);
            println!();
            println!(
                "| retention under the e2e load (at {} jobs) | value | target |",
                last.history
            );
            println!("|---|---|---|");
            println!(
                "| rows removed/s (sync_jobs) | {:.0} | >= 330 |",
                r.rows_per_s
            );
            println!(
                "| trigger p99 with retention | {:.1} ms | within {p99_min:.1}-{p99_max:.1} (+ spread {:.1}) |",
                r.trigger_p99_ms,
                p99_max - p99_min
            );
            println!("| e2e jobs/s with retention | {:.0} | |", r.jobs_per_s);
            println!(
                "| longest lock wait seen | {:.0} ms | <= 50 |",
                r.longest_lock_wait_ms
            );
        }
        _ => println!(
            "\nretention removed nothing (no history past 30 days, or no retention in these binaries)"
        ),
    }
}
