//! The sync engine benchmark: one large stub connection through the real
//! binaries, (a) a full sync into an empty store, (b) the same again with
//! nothing changed, (c) an incremental sync of a few new entities on top,
//! beside `copy-limit.sh` (entity rows a single COPY writes per second)
//! measured in the same run, with the worker's peak memory.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::processes::{BenchEnv, Services, build_binaries, measure_limit};
use crate::sources::SourceKind;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Entities of the connection.
    #[arg(long, default_value_t = 1_000_000)]
    entities: u64,
    /// Size of each entity's body.
    #[arg(long, default_value_t = 512)]
    payload_bytes: u32,
    /// New entities the incremental sync (c) finds.
    #[arg(long, default_value_t = 1000)]
    incremental: u64,
    /// Rows copy-limit.sh writes to measure the limit.
    #[arg(long, default_value_t = 200_000)]
    pub limit_rows: u64,
    /// The source: the stub (the options above), or a real one beside its
    /// own read rate (`crate::sources`).
    #[arg(long, value_enum, default_value_t = SourceKind::Stub)]
    source: SourceKind,
    /// Rows (objects for s3) of a real source; default 200,000 (s3: 10,000).
    #[arg(long)]
    pub source_rows: Option<u64>,
    /// The MariaDB/MySQL server for `--source mysql` (without database).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    pub mysql: String,
    /// moto's S3 server for `--source s3`.
    #[arg(long, default_value = "target/s3-venv/bin/moto_server")]
    pub moto: String,
    #[command(flatten)]
    pub services: Services,
}

pub const KEY: &str = "sw_bench_sync";

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.source != SourceKind::Stub {
        return crate::sources::run(&options, options.source).await;
    }
    build_binaries()?;
    let mut env = BenchEnv::create(&options.services).await?;
    let outcome = measure(&options, &mut env).await;
    env.destroy().await?;
    outcome?.print(&options);
    Ok(())
}

struct Report {
    limit: f64,
    full: Duration,
    unchanged: Duration,
    incremental: Duration,
    peak_rss_kib: u64,
}

impl Report {
    fn print(&self, options: &Options) {
        let rate = options.entities as f64 / self.full.as_secs_f64();
        println!();
        println!(
            "syncway sync: stub connection of {} entities ({} B payload), one worker",
            options.entities, options.payload_bytes
        );
        println!("| figure | value | limit (same run) | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| (a) full sync into an empty store | {:.2} s, {rate:.0} entities/s | {:.0} entities/s (copy-limit.sh) | {:.2} |",
            self.full.as_secs_f64(),
            self.limit,
            rate / self.limit
        );
        let unchanged = options.entities as f64 / self.unchanged.as_secs_f64();
        println!(
            "| (b) the same again, unchanged | {:.2} s, {unchanged:.0} entities/s | | {:.2} |",
            self.unchanged.as_secs_f64(),
            unchanged / self.limit
        );
        println!(
            "| (c) incremental, {} new entities | {:.2} s | {:.1}% of (a) | |",
            options.incremental,
            self.incremental.as_secs_f64(),
            100.0 * self.incremental.as_secs_f64() / self.full.as_secs_f64()
        );
        println!(
            "| worker peak RSS | {:.0} MB | | |",
            self.peak_rss_kib as f64 / 1024.0
        );
    }
}

async fn measure(options: &Options, env: &mut BenchEnv) -> anyhow::Result<Report> {
    let limit = measure_limit(
        &options.services.limits.join("copy-limit.sh"),
        &[env.database_url(), options.limit_rows.to_string()],
        "limit_entities_per_s",
    )?;
    let http = reqwest::Client::new();
    let api = env.start_api(&http, KEY, &[]).await?;
    env.start_worker(&http, &[]).await?;
    let worker = env
        .pids("syncway-worker")
        .first()
        .copied()
        .context("the worker is not running")?;

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
    let config =
        |count: u64| json!({"entity_count": count, "payload_bytes": options.payload_bytes});
    let connection = client
        .call(
            "POST",
            "/source-connections",
            Some(
                json!({"short_name": "stub", "readable_collection_id": "bench",
                        "config": config(options.entities), "schedule": {"continuous": true}}),
            ),
        )
        .await?["id"]
        .as_str()
        .context("no connection id")?
        .to_owned();

    let full = client
        .sync(&connection, true, [options.entities as i64, 0, 0])
        .await
        .context("(a) full sync")?;
    let unchanged = client
        .sync(&connection, true, [0, 0, 0])
        .await
        .context("(b) unchanged full sync")?;
    client
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"config": config(options.entities + options.incremental)})),
        )
        .await?;
    let incremental = client
        .sync(&connection, false, [options.incremental as i64, 0, 0])
        .await
        .context("(c) incremental sync")?;
    Ok(Report {
        limit,
        full,
        unchanged,
        incremental,
        peak_rss_kib: peak_rss_kib(worker)?,
    })
}

pub struct Api<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
}

impl Api<'_> {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    /// Runs a job to its end; checks its inserted/updated/deleted counts and
    /// returns the time from trigger to completion.
    pub async fn sync(
        &self,
        connection: &str,
        force_full_sync: bool,
        expected: [i64; 3],
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let job = self
            .call(
                "POST",
                &format!("/source-connections/{connection}/run?force_full_sync={force_full_sync}"),
                None,
            )
            .await?;
        let id = job["id"].as_str().context("no job id")?.to_owned();
        loop {
            let job = self
                .call(
                    "GET",
                    &format!("/source-connections/{connection}/jobs/{id}"),
                    None,
                )
                .await?;
            match job["status"].as_str() {
                Some("completed") => {
                    let elapsed = started.elapsed();
                    let counts = ["inserted", "updated", "deleted"]
                        .map(|kind| job[format!("entities_{kind}")].as_i64().unwrap_or(-1));
                    if counts != expected {
                        bail!("counted {counts:?}, expected {expected:?}: {job}");
                    }
                    return Ok(elapsed);
                }
                Some("failed" | "cancelled") => bail!("the job ended {job}"),
                // Polled often: the figures are a second or two.
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

/// The peak resident set of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}
