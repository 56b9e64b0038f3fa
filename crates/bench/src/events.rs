//! `syncway-bench events`: what job event streams cost and how late they
//! are. One API process; S streams follow one job; the bench commits C
//! changes of the job (as a worker's batch commits do: an UPDATE of its
//! counts, the version trigger counting it) at a fixed pace, and records
//! when each stream first shows a state at least as new as each commit.
//! Postgres' cost is counted two ways: the API's own count of reads of the
//! watched jobs, and the database's transactions during the run (minus the
//! bench's commits). Run with 1 and with 1,000 streams: the cost should not
//! move.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use syncway_cli::sse::SseParser;
use uuid::Uuid;

use crate::processes::{BenchEnv, Services, build_binaries, create_connections, metric};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Stream counts to try, in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,1000")]
    streams: Vec<usize>,
    /// Commits of the job per run.
    #[arg(long, default_value_t = 100)]
    commits: usize,
    /// Pause between commits.
    #[arg(long, default_value_t = 100)]
    commit_every_ms: u64,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_events_key_0123456789abcdefghijkl";

struct Row {
    streams: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    reads_per_second: f64,
    reads_per_commit: f64,
    other_transactions_per_second: f64,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let mut rows = Vec::new();
    for &streams in &options.streams {
        let mut env = BenchEnv::create(&options.services).await?;
        let row = one(&options, &mut env, streams).await;
        env.destroy().await?;
        rows.push(row?);
    }
    println!();
    println!(
        "syncway events: one job followed by S streams on one API process, {} commits {} ms apart",
        options.commits, options.commit_every_ms
    );
    println!(
        "| streams | commit -> stream p50 | p99 | max | job reads/s | reads per commit | other Postgres xacts/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} | {:.2} | {:.1} |",
            row.streams,
            row.p50_ms,
            row.p99_ms,
            row.max_ms,
            row.reads_per_second,
            row.reads_per_commit,
            row.other_transactions_per_second
        );
    }
    Ok(())
}

/// Per stream: (version, when it arrived).
type Arrivals = Arc<Mutex<Vec<Vec<(i64, Instant)>>>>;

async fn transactions(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0))
}

async fn one(options: &Options, env: &mut BenchEnv, streams: usize) -> anyhow::Result<Row> {
    let http = reqwest::Client::new();
    let metrics_port = crate::processes::free_port()?;
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let api = env
        .start_api(
            &http,
            KEY,
            &[(
                "SYNCWAY_METRICS__LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )],
        )
        .await?;
    let body = json!({"short_name": "stub", "config": {"entity_count": 1}});
    let connection = create_connections(&http, &api, KEY, "events", body, 1).await?[0];
    let job: serde_json::Value = http
        .post(format!("{api}/source-connections/{connection}/run"))
        .header("x-api-key", KEY)
        .send()
        .await?
        .json()
        .await?;
    let job_id: Uuid = job["id"].as_str().context("a job id")?.parse()?;
    let path = format!("{api}/source-connections/{connection}/jobs/{job_id}/events");
    let arrivals: Arrivals = Arc::new(Mutex::new(vec![Vec::new(); streams]));
    let (opened, mut all_open) = tokio::sync::mpsc::channel::<()>(streams);
    let mut readers = Vec::new();
    for index in 0..streams {
        let (http, path, arrivals, opened) =
            (http.clone(), path.clone(), arrivals.clone(), opened.clone());
        readers.push(tokio::spawn(async move {
            let response = http.get(&path).header("x-api-key", KEY).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "stream: {}",
                response.status()
            );
            let mut parser = SseParser::default();
            let mut bytes = response.bytes_stream();
            let mut first = true;
            while let Some(chunk) = bytes.next().await {
                for event in parser.feed(&chunk?) {
                    let Some(version) = event.id.and_then(|id| id.parse::<i64>().ok()) else {
                        continue;
                    };
                    let mut arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                    arrivals[index].push((version, Instant::now()));
                    if first {
                        first = false;
                        let _ = opened.try_send(());
                    }
                }
            }
            Ok(())
        }));
    }
    drop(opened);
    for _ in 0..streams {
        tokio::time::timeout(Duration::from_secs(60), all_open.recv())
            .await
            .context("streams did not open within 60 s")?;
    }
    // Postgres flushes a backend's statistics about once a second: let the
    // streams' opening reads land before the window starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = env.client().await?;
    let reads_before = metric(&http, &metrics_url, "syncway_api_job_event_reads_total").await?;
    let xacts_before = transactions(&client).await?;
    let started = Instant::now();
    let mut commits = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_millis(options.commit_every_ms));
    for _ in 0..options.commits {
        pace.tick().await;
        let version: i64 = client
            .query_one(
                "UPDATE sync_jobs SET entities_inserted = entities_inserted + 1 WHERE id = $1 RETURNING version",
                &[&job_id],
            )
            .await?
            .get(0);
        commits.push((version, Instant::now()));
    }
    let last = commits.last().map_or(0, |(version, _)| *version);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = {
            let arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
            arrivals
                .iter()
                .all(|a| a.last().is_some_and(|(v, _)| *v >= last))
        };
        if seen {
            break;
        }
        if Instant::now() > deadline {
            bail!("streams did not all see the last commit within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let reads =
        metric(&http, &metrics_url, "syncway_api_job_event_reads_total").await? - reads_before;
    let xacts = (transactions(&client).await? - xacts_before) as f64 - options.commits as f64;
    for reader in readers {
        reader.abort();
    }
    let mut latencies = Vec::new();
    let arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    for stream in arrivals.iter() {
        for (version, committed) in &commits {
            if let Some((_, arrived)) = stream.iter().find(|(v, _)| v >= version) {
                latencies
                    .push(arrived.saturating_duration_since(*committed).as_secs_f64() * 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    eprintln!("events: {streams} stream(s): p99 {:.0} ms", at(0.99));
    Ok(Row {
        streams,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        reads_per_second: reads / elapsed,
        reads_per_commit: reads / options.commits as f64,
        other_transactions_per_second: xacts / elapsed,
    })
}
