//! The end-to-end job benchmark.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::cpu::CpuSnapshot;
use crate::processes::{BenchEnv, Services, build_binaries, measure_limit};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Connections, hence jobs.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Concurrent HTTP clients triggering jobs (16: as many as
    /// job-state-limit.sh runs).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Worker processes. With 0, only the trigger path (HTTP, outbox,
    /// relay) is measured: jobs/s is then the rate of accepted triggers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs each worker runs at once (SYNCWAY_WORKER__CONCURRENCY).
    #[arg(long, default_value_t = 32)]
    concurrency: u16,
    /// Postgres connections of each process (SYNCWAY_DATABASE__POOL_SIZE).
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    #[command(flatten)]
    services: Services,
    /// Seconds the job-state limit script measures for.
    #[arg(long, default_value_t = 10)]
    limit_seconds: u32,
    /// Print the outbox backlog and job states every 500 ms (to stderr).
    #[arg(long)]
    progress: bool,
    /// Run the Celery peer (../shared/peers/celery) on the same services in
    /// the same run, with the same jobs and clients, and print the ratio.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    celery: bool,
    /// The folder of the peers.
    #[arg(long, default_value = "../shared/peers")]
    peers: std::path::PathBuf,
    /// The virtualenv for Celery (made when missing).
    #[arg(long, default_value = "target/bench-venv")]
    celery_venv: std::path::PathBuf,
    /// Run on a private Postgres cluster with pg_stat_statements and print
    /// what each statement costs per job (see `statements.rs`).
    #[arg(long)]
    statements: bool,
}

const KEY: &str = "sw_bench_key";

/// The tables the setup fills.
pub(crate) const SETTLE: &str =
    "VACUUM ANALYZE organizations, api_keys, collections, source_connections, cursors";

pub async fn run(mut options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    // Kept until the end: dropping it stops the cluster.
    let private = if options.statements {
        let cluster = crate::statements::start_cluster()?;
        options.services.postgres = cluster.url();
        Some(cluster)
    } else {
        None
    };
    let env = BenchEnv::create(&options.services).await?;
    let measured = measure(&options, env).await;
    drop(private);
    measured
}

async fn measure(options: &Options, mut env: BenchEnv) -> anyhow::Result<()> {
    // The limit first, on the same database server, with nothing else running.
    let script = options.services.limits.join("job-state-limit.sh");
    let limit = measure_limit(
        &script,
        &[env.database_url(), options.limit_seconds.to_string()],
        "limit_jobs_per_s",
    );
    let limit = match limit {
        Ok(limit) => limit,
        Err(error) => {
            env.destroy().await?;
            return Err(error);
        }
    };

    let outcome = run_jobs(options, &mut env).await;
    let name = env.database.clone();
    env.destroy().await?;
    let report = outcome?;
    let peer = if options.celery {
        let run = async {
            let venv = crate::peer::ensure_venv(&options.celery_venv)?;
            crate::peer::run(
                &options.services,
                &options.peers,
                &venv,
                &name,
                options.jobs,
                options.clients,
            )
            .await
        };
        match run.await {
            Ok(run) => Some(run),
            Err(error) => {
                eprintln!("the Celery peer failed: {error:#}");
                None
            }
        }
    } else {
        None
    };
    report.print(options, limit, peer);
    Ok(())
}

struct Report {
    jobs: usize,
    elapsed: Duration,
    rejected: usize,
    failed: i64,
    trigger: Histogram<u64>,
    to_completed: Histogram<u64>,
    cpu: Vec<(String, f64)>,
    statements: Vec<crate::statements::Statement>,
}

impl Report {
    fn print(&self, options: &Options, limit: f64, peer: Option<crate::peer::PeerRun>) {
        let rate = self.jobs as f64 / self.elapsed.as_secs_f64();
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!();
        println!(
            "syncway e2e: {} jobs (1 stub entity each), {} HTTP clients, {} workers x concurrency {}",
            self.jobs, options.clients, options.workers, options.concurrency
        );
        println!("| figure | value | limit (same run) | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| end-to-end jobs/s | {rate:.0} | {limit:.0} (job-state-limit.sh) | {:.2} |",
            rate / limit
        );
        println!(
            "| trigger latency p50 | {:.1} ms | | |",
            ms(&self.trigger, 0.5)
        );
        println!(
            "| trigger latency p99 | {:.1} ms | target 25 ms | |",
            ms(&self.trigger, 0.99)
        );
        println!(
            "| trigger -> completed p50 | {:.1} ms | | |",
            ms(&self.to_completed, 0.5)
        );
        println!(
            "| trigger -> completed p99 | {:.1} ms | | |",
            ms(&self.to_completed, 0.99)
        );
        if let Some(peer) = peer {
            println!(
                "| Celery peer end-to-end jobs/s (same run) | {:.0} | | syncway / Celery {:.2}x |",
                peer.jobs_per_s,
                rate / peer.jobs_per_s
            );
            println!(
                "| Celery peer trigger rate / trigger -> completed p50 / p99 | {:.0}/s / {:.1} / {:.1} ms | | |",
                peer.trigger_per_s, peer.p50_ms, peer.p99_ms
            );
        }
        println!("| wall time | {:.2} s | | |", self.elapsed.as_secs_f64());
        println!(
            "| triggers refused / jobs failed | {} / {} | | |",
            self.rejected, self.failed
        );
        println!();
        println!("| CPU per job | ms |");
        println!("|---|---|");
        let total: f64 = self.cpu.iter().map(|(_, ms)| ms).sum();
        for (component, ms) in &self.cpu {
            println!("| {component} | {ms:.3} |");
        }
        println!("| all | {total:.3} |");
        if !self.statements.is_empty() {
            crate::statements::print(&self.statements);
        }
    }
}

async fn run_jobs(options: &Options, env: &mut BenchEnv) -> anyhow::Result<Report> {
    let pool_size = ("SYNCWAY_DATABASE__POOL_SIZE", options.pool_size.to_string());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.clients * 2)
        .build()?;
    let api = env
        .start_api(&http, KEY, std::slice::from_ref(&pool_size))
        .await?;
    for _ in 0..options.workers {
        let concurrency = (
            "SYNCWAY_WORKER__CONCURRENCY",
            options.concurrency.to_string(),
        );
        env.start_worker(&http, &[concurrency, pool_size.clone()])
            .await?;
    }

    let connections = create_connections(&http, &api, options).await?;
    // Settle the database so the setup's autovacuum, statistics and dirty
    // pages do not land in the measured phase. Only the tables the setup
    // filled: a VACUUM of the still empty job tables would record them as
    // truly empty, and plans cached from that belief (sequential scans)
    // would outlive the thousands of rows the run then writes.
    let settle = env.client().await?;
    for statement in [SETTLE, "CHECKPOINT"] {
        settle
            .batch_execute(statement)
            .await
            .with_context(|| format!("{statement} before measuring"))?;
    }
    if options.statements {
        crate::statements::reset(&settle).await?;
    }
    let progress = if options.progress {
        let db = env.client().await?;
        Some(tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Ok(row) = db
                    .query_one(
                        "SELECT (SELECT count(*) FROM outbox_jobs),
                                count(*) FILTER (WHERE status = 'pending'),
                                count(*) FILTER (WHERE status = 'running'),
                                count(*) FILTER (WHERE status = 'completed')
                         FROM sync_jobs",
                        &[],
                    )
                    .await
                else {
                    return;
                };
                let [outbox, pending, running, done]: [i64; 4] =
                    [row.get(0), row.get(1), row.get(2), row.get(3)];
                eprintln!(
                    "{:>6.1}s outbox {outbox:>6} pending {pending:>6} running {running:>4} completed {done:>6}",
                    start.elapsed().as_secs_f64()
                );
            }
        }))
    } else {
        None
    };
    let cpu_before = CpuSnapshot::take();
    let started = Instant::now();
    let triggered =
        crate::triggers::trigger_all(&http, &api, KEY, &connections, options.clients).await?;

    let db = env.client().await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Cheap enough not to disturb what it measures: the partial unique index
    // holds only active jobs.
    let active = db
        .prepare("SELECT count(*) FROM sync_jobs WHERE active")
        .await?;
    // Every trigger has been answered: the accepted jobs all exist.
    if options.workers > 0 {
        loop {
            let active: i64 = db.query_one(&active, &[]).await?.get(0);
            if active == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{active} jobs still active after 600 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let elapsed = started.elapsed();
    let cpu = CpuSnapshot::take().per_job_since(&cpu_before, options.jobs);
    let statements = if options.statements {
        crate::statements::read(&settle, options.jobs).await?
    } else {
        Vec::new()
    };
    if let Some(progress) = progress {
        progress.abort();
    }

    let mut to_completed = Histogram::<u64>::new(3)?;
    let rows = db
        .query(
            "SELECT (extract(epoch FROM completed_at - created_at) * 1e6)::bigint FROM sync_jobs
             WHERE completed_at IS NOT NULL",
            &[],
        )
        .await?;
    for row in rows {
        to_completed.record(row.get::<_, i64>(0).max(0) as u64)?;
    }
    let failed: i64 = db
        .query_one(
            "SELECT count(*) FROM sync_jobs WHERE status IN ('failed', 'cancelled')",
            &[],
        )
        .await?
        .get(0);
    Ok(Report {
        jobs: options.jobs,
        elapsed,
        rejected: triggered.refused,
        failed,
        trigger: triggered.latencies,
        to_completed,
        cpu,
        statements,
    })
}

async fn create_connections(
    http: &reqwest::Client,
    api: &str,
    options: &Options,
) -> anyhow::Result<Vec<String>> {
    let collection: Value = http
        .post(format!("{api}/collections"))
        .header("x-api-key", KEY)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let collection = collection["readable_id"]
        .as_str()
        .context("no collection created")?
        .to_owned();
    let body = json!({
        "short_name": "stub",
        "readable_collection_id": collection,
        "config": {"entity_count": 1},
    });
    let creations = futures_util::stream::iter(0..options.jobs).map(|_| {
        let request = http
            .post(format!("{api}/source-connections"))
            .header("x-api-key", KEY)
            .json(&body);
        async move {
            let created: Value = request.send().await?.json().await?;
            created["id"]
                .as_str()
                .map(str::to_owned)
                .context("no connection created")
        }
    });
    use futures_util::StreamExt;
    creations
        .buffer_unordered(options.clients)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect()
}
