//! The SQL ceiling: the statements every job costs (auth, trigger, claim,
//! one batch commit of one entity), run through the real `store` functions
//! from concurrent clients with no HTTP, broker or worker around them. The
//! end-to-end rate cannot pass this figure; comparing the two shows how much
//! the rest of the path costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use syncway_store::api_keys;
use syncway_store::jobs::{self, Batch, Claim, EntityWrite, Outcome, Triggered};

use crate::processes::{BenchEnv, Services, measure_limit};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Concurrent clients (as job-state-limit.sh uses).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_sql";
const OWNER: &str = "bench";
/// Connections per client: each client cycles through its own, so no two
/// clients ever contend for one connection's active-job slot.
const CONNECTIONS_PER_CLIENT: usize = 2000;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let env = BenchEnv::create(&options.services).await?;
    let result = measure(&options, &env).await;
    env.destroy().await?;
    let (rate, limit) = result?;
    println!();
    println!(
        "syncway SQL ceiling: auth + trigger + claim + commit of 1 entity, {} clients, {} s",
        options.clients, options.seconds
    );
    println!("| figure | value | limit (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| jobs/s, SQL only | {rate:.0} | {limit:.0} (job-state-limit.sh) | {:.2} |",
        rate / limit
    );
    Ok(())
}

async fn measure(options: &Options, env: &BenchEnv) -> anyhow::Result<(f64, f64)> {
    let limit = measure_limit(
        &options.services.limits.join("job-state-limit.sh"),
        &[env.database_url(), options.seconds.to_string()],
        "limit_jobs_per_s",
    )?;
    let pool = syncway_store::open(
        &syncway_store::PoolSettings::new(&env.database_url(), options.clients),
        true,
    )
    .await
    .context("opening the benchmark database")?;
    let client = pool.get().await?;
    let organization = api_keys::ensure_organization_with_key(&client, "bench", KEY).await?;
    let collection =
        syncway_store::collections::insert(&client, organization, "bench", "bench").await?;
    let fields = syncway_store::connections::ConnectionFields {
        name: "bench".into(),
        description: None,
        config: json!({"entity_count": 1}),
        schedule: Default::default(),
        max_delete_fraction: syncway_store::connections::DEFAULT_MAX_DELETE_FRACTION,
    };
    let mut connections = Vec::new();
    for _ in 0..options.clients * CONNECTIONS_PER_CLIENT {
        let connection = syncway_store::connections::insert(
            &client,
            uuid::Uuid::now_v7(),
            organization,
            &collection.readable_id,
            "stub",
            &fields,
            None,
        )
        .await?
        .context("collection vanished")?;
        connections.push(connection.id);
    }
    client.batch_execute(crate::e2e::SETTLE).await?;
    client.batch_execute("CHECKPOINT").await?;
    drop(client);

    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = connections
        .chunks(CONNECTIONS_PER_CLIENT)
        .map(|mine| {
            let (pool, done, mine) = (pool.clone(), done.clone(), mine.to_vec());
            tokio::spawn(async move {
                for connection in mine.iter().cycle() {
                    if Instant::now() > deadline {
                        return Ok::<(), anyhow::Error>(());
                    }
                    one_job(&pool, *connection).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    Ok((rate, limit))
}

/// What one job costs Postgres, statement for statement as the API and the
/// worker issue them.
async fn one_job(pool: &syncway_store::Pool, connection: uuid::Uuid) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let organization = api_keys::find_organization(&client, KEY)
        .await?
        .context("bench key vanished")?;
    let Triggered::Created(job) = jobs::trigger(&client, organization, connection, false).await?
    else {
        anyhow::bail!("trigger refused");
    };
    let Claim::Claimed(claimed) = jobs::claim(&client, job.id, OWNER, 30.0).await? else {
        anyhow::bail!("claim refused");
    };
    let payload = json!({"id": "stub-0", "index": 0, "body": "x".repeat(256)});
    let entity = EntityWrite::new("stub-0".into(), &payload)?;
    let cursor = json!(0);
    let outcome = Outcome {
        status: syncway_model::JobStatus::Completed,
        error: None,
        error_category: None,
        error_details: None,
    };
    let batch = Batch {
        entities: std::slice::from_ref(&entity),
        deleted: &[],
        failed: 0,
        cursor: Some(&cursor),
        full_sync: true,
        seen_total: None,
        mass_delete_min_entities: None,
    };
    let commit = jobs::Commit {
        job_id: claimed.id,
        source_connection_id: connection,
        run_id: claimed.lease,
        seq: 1,
        batch,
        outcome: Some(&outcome),
    };
    jobs::commit_batch(&client, 30.0, &commit)
        .await?
        .context("commit fenced out")?;
    Ok(())
}
