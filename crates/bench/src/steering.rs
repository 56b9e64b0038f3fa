//! `steering`: manual runs ahead of a scheduled backlog, and job search
//! over a long history.
//!
//! Priority: `backlog` scheduled jobs (stub, `entity_ms` each) are queued
//! on one worker; once it runs them, `manual` API triggers arrive one per
//! `manual_interval_ms`. Each manual job's start latency (created ->
//! started) is measured, and the scheduled jobs' completion rate before and
//! while manual runs arrive (not starved: at least half). The rest of the
//! backlog is then cancelled with one bulk action, timed.
//!
//! Search: `history` finished jobs (a busy deployment's mix) are added to
//! the same database, and each filter of `GET /jobs` (and `/admin/jobs`) is
//! timed, first pages and pages deep in the history.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use syncway_model::JobMessage;
use uuid::Uuid;

use crate::processes::{
    BenchEnv, Services, build_binaries, create_connections, nearest_rank, timed_request,
};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Scheduled jobs queued before the manual runs arrive.
    #[arg(long, default_value_t = 5_000)]
    backlog: usize,
    /// Milliseconds each scheduled job's one entity takes.
    #[arg(long, default_value_t = 100)]
    entity_ms: u64,
    /// Jobs the worker runs at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Manual runs triggered, one per interval.
    #[arg(long, default_value_t = 20)]
    manual: usize,
    #[arg(long, default_value_t = 1000)]
    manual_interval_ms: u64,
    /// Finished jobs in the history searched.
    #[arg(long, default_value_t = 3_000_000)]
    history: u64,
    /// Requests timed per search.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_steering_key";

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let mut env = BenchEnv::create(&options.services).await?;
    let outcome = measure(&options, &mut env).await;
    env.destroy().await?;
    outcome
}

async fn measure(options: &Options, env: &mut BenchEnv) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let api = env.start_api(&http, KEY, &[]).await?;
    let db = env.client().await?;
    let body = json!({"short_name": "stub",
                      "config": {"entity_count": 1, "delay_ms_per_entity": options.entity_ms}});
    let scheduled = create_connections(&http, &api, KEY, "backlog", body, options.backlog).await?;
    let body = json!({"short_name": "stub", "config": {"entity_count": 1}});
    let manual = create_connections(&http, &api, KEY, "manual", body, options.manual).await?;
    queue_backlog(&db, &scheduled).await?;
    eprintln!("{} scheduled jobs queued", scheduled.len());
    env.start_worker(
        &http,
        &[
            (
                "SYNCWAY_WORKER__CONCURRENCY",
                options.concurrency.to_string(),
            ),
            ("SYNCWAY_WEBHOOKS__ENABLED", "false".to_owned()),
            ("SYNCWAY_RETENTION__ENABLED", "false".to_owned()),
        ],
    )
    .await?;
    // The backlog's rate alone, once the worker is under way.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_millis(options.manual_interval_ms * options.manual as u64);
    let before = completions(&db, window).await?;
    let started = Instant::now();
    let completed_at_start = completed(&db).await?;
    let mut jobs = Vec::new();
    for connection in &manual {
        let answer: Value = http
            .post(format!("{api}/source-connections/{connection}/run"))
            .header("x-api-key", KEY)
            .send()
            .await?
            .json()
            .await?;
        let id = answer["id"].as_str().and_then(|id| id.parse::<Uuid>().ok());
        jobs.push(id.ok_or_else(|| anyhow::anyhow!("no job in {answer}"))?);
        tokio::time::sleep(Duration::from_millis(options.manual_interval_ms)).await;
    }
    let during =
        (completed(&db).await? - completed_at_start) as f64 / started.elapsed().as_secs_f64();
    let latencies = manual_latencies(&db, &jobs).await?;
    let cancel = cancel_backlog(&http, &api).await?;
    let searches = search(options, &http, &api, &db, &scheduled).await?;
    print(options, before, during, &latencies, cancel, &searches);
    Ok(())
}

/// The backlog: one scheduled job per connection and its message in the
/// jobs queue (as the scheduler writes them), in one transaction.
async fn queue_backlog(db: &tokio_postgres::Client, connections: &[Uuid]) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = connections.iter().map(|_| Uuid::now_v7()).collect();
    let payloads: Vec<Vec<u8>> = ids
        .iter()
        .zip(connections)
        .map(|(job, connection)| JobMessage::new(*job, *connection).encode())
        .collect();
    db.execute(
        "WITH jobs AS (
             INSERT INTO sync_jobs (id, source_connection_id, trigger, scheduled_for)
             SELECT id, connection, 'schedule', now() FROM unnest($1::uuid[], $2::uuid[])
                 WITH ORDINALITY AS j(id, connection, n)
             ORDER BY n RETURNING id
         )
         INSERT INTO outbox (job_id, payload, kind)
         SELECT id, payload, 'job' FROM unnest($1::uuid[], $3::bytea[]) WITH ORDINALITY
             AS m(id, payload, n) ORDER BY n",
        &[&ids, &connections, &payloads],
    )
    .await?;
    Ok(())
}

async fn completed(db: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM sync_jobs WHERE trigger = 'schedule' AND status = 'completed'",
            &[],
        )
        .await?
        .get(0))
}

/// Scheduled jobs completed per second over `window`.
async fn completions(db: &tokio_postgres::Client, window: Duration) -> anyhow::Result<f64> {
    let first = completed(db).await?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    Ok((completed(db).await? - first) as f64 / started.elapsed().as_secs_f64())
}

/// Each manual job's wait from its trigger to its start, in ms, once all
/// have started.
async fn manual_latencies(db: &tokio_postgres::Client, jobs: &[Uuid]) -> anyhow::Result<Vec<f64>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = db
            .query(
                "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM sync_jobs
                 WHERE id = ANY($1) AND started_at IS NOT NULL",
                &[&jobs],
            )
            .await?;
        if rows.len() == jobs.len() {
            return Ok(rows.iter().map(|row| row.get(0)).collect());
        }
        anyhow::ensure!(Instant::now() < deadline, "manual jobs did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Cancels what is left of the backlog with one bulk action: (matched,
/// seconds until its task completed).
async fn cancel_backlog(http: &reqwest::Client, api: &str) -> anyhow::Result<(i64, f64)> {
    let started = Instant::now();
    let submitted: Value = http
        .post(format!("{api}/jobs/bulk"))
        .header("x-api-key", KEY)
        .json(&json!({"action": "cancel", "filter": {"trigger": "schedule", "status": "pending"}}))
        .send()
        .await?
        .json()
        .await?;
    let task = submitted["task_id"].as_str().unwrap_or_default().to_owned();
    loop {
        let state: Value = http
            .get(format!("{api}/tasks/{task}"))
            .header("x-api-key", KEY)
            .send()
            .await?
            .json()
            .await?;
        if state["status"] != "running" {
            let matched = submitted["matched"].as_i64().unwrap_or(0);
            return Ok((matched, started.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (what, p50 ms, p99 ms) per search.
async fn search(
    options: &Options,
    http: &reqwest::Client,
    api: &str,
    db: &tokio_postgres::Client,
    connections: &[Uuid],
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let shape = crate::history::Shape {
        span_days: 40,
        total: options.history,
        mixed: true,
    };
    let loading = Instant::now();
    crate::history::load(db, connections, 0, options.history, &shape, true).await?;
    db.batch_execute("VACUUM ANALYZE").await?;
    eprintln!(
        "history: {} jobs added in {:.0} s",
        options.history,
        loading.elapsed().as_secs_f64()
    );
    let organization: Uuid = db
        .query_one(
            "SELECT organization_id FROM source_connections WHERE id = $1",
            &[&connections[0]],
        )
        .await?
        .get(0);
    let middle = chrono::Utc::now() - chrono::Duration::days(20);
    let deep = format!("&created_before={}", middle.format("%Y-%m-%dT%H:%M:%SZ"));
    let searches = [
        ("/jobs?limit=50".to_owned(), "newest"),
        ("/jobs?status=failed&limit=50".to_owned(), "status=failed"),
        (
            "/jobs?status=cancelled&limit=50".to_owned(),
            "status=cancelled",
        ),
        ("/jobs?status=pending&limit=50".to_owned(), "status=pending"),
        (
            format!("/jobs?source_connection_id={}&limit=50", connections[1]),
            "source_connection_id",
        ),
        ("/jobs?short_name=stub&limit=50".to_owned(), "short_name"),
        ("/jobs?trigger=api&limit=50".to_owned(), "trigger=api"),
        (
            "/jobs?error_category=rate_limited&limit=50".to_owned(),
            "error_category",
        ),
        (
            format!("/jobs?status=failed&limit=50{deep}"),
            "status=failed, 20 days back",
        ),
        (
            format!("/jobs?trigger=schedule&limit=50{deep}"),
            "trigger=schedule, 20 days back",
        ),
        (
            "/admin/jobs?status=failed&limit=50".to_owned(),
            "admin status=failed",
        ),
        (
            format!("/admin/jobs?organization_id={organization}&error_category=timeout&limit=50"),
            "admin organization + error_category",
        ),
    ];
    let mut figures = bulk_dry_runs(options, http, api).await?;
    for (path, what) in searches {
        let mut histogram = Histogram::<u64>::new(3)?;
        let mut after: Option<String> = None;
        for _ in 0..options.samples {
            // Alternately the first page and the page after the last one.
            let url = match after.take() {
                Some(next) => format!("{api}{path}&after={next}"),
                None => format!("{api}{path}"),
            };
            let sent = Instant::now();
            let response = http.get(&url).header("x-api-key", KEY).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            let page: Value = response.json().await?;
            histogram.record(u64::try_from(sent.elapsed().as_micros())?)?;
            if histogram.len() % 2 == 1 {
                after = page["next"].as_str().map(str::to_owned);
            }
        }
        let quantile = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        figures.push((what.to_owned(), quantile(0.5), quantile(0.99)));
    }
    Ok(figures)
}

/// (what, p50 ms, p99 ms) of bulk dry runs over the whole history: what a
/// bulk action's count costs before anything is acted on.
async fn bulk_dry_runs(
    options: &Options,
    http: &reqwest::Client,
    api: &str,
) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let actions = [
        (
            json!({"action": "retry", "filter": {}}),
            "bulk dry run: retry (every failed)",
        ),
        (
            json!({"action": "run", "filter": {"short_name": "stub"}}),
            "bulk dry run: run (short_name)",
        ),
        (
            json!({"action": "cancel", "filter": {"status": "running"}}),
            "bulk dry run: cancel (running)",
        ),
    ];
    let mut figures = Vec::new();
    for (mut body, what) in actions {
        body["dry_run"] = json!(true);
        let mut histogram = Histogram::<u64>::new(3)?;
        for _ in 0..options.samples.min(20) {
            let request = http
                .post(format!("{api}/jobs/bulk"))
                .header("x-api-key", KEY)
                .json(&body);
            histogram.record(timed_request(request, &body.to_string()).await?)?;
        }
        let quantile = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        figures.push((what.to_owned(), quantile(0.5), quantile(0.99)));
    }
    Ok(figures)
}

fn print(
    options: &Options,
    before: f64,
    during: f64,
    latencies: &[f64],
    (matched, cancel_seconds): (i64, f64),
    searches: &[(String, f64, f64)],
) {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| nearest_rank(&sorted, q);
    println!(
        "manual runs ahead of {} scheduled jobs ({} ms each) on one worker of concurrency {}:",
        options.backlog, options.entity_ms, options.concurrency
    );
    println!(
        "  start latency of {} manual runs (one per {} ms): p50 {:.0} ms, p99 {:.0} ms (target <= 2000 ms)",
        latencies.len(),
        options.manual_interval_ms,
        at(0.5),
        at(0.99)
    );
    println!(
        "  scheduled jobs completed: {before:.1}/s before, {during:.1}/s while manual runs arrived \
         (ratio {:.2}, target >= 0.50)",
        during / before
    );
    println!(
        "  bulk cancel of the rest of the backlog: {matched} jobs in {cancel_seconds:.1} s \
         ({:.0} jobs/s)",
        matched as f64 / cancel_seconds
    );
    println!(
        "job search with {} jobs in history, {} requests each (p99 target <= 50 ms):",
        options.history, options.samples
    );
    for (what, p50, p99) in searches {
        println!("  {what:<40} p50 {p50:>6.1} ms   p99 {p99:>6.1} ms");
    }
}
