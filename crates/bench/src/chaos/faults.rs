//! The faults the chaos scenarios make.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::drive::{Cut, fault_length, worker_vars};
use super::{FAULT, Owned, Scenario};
use crate::processes::BenchEnv;

/// Makes the scenario's fault; returns when it ended (since the start).
pub(super) async fn fault(
    scenario: Scenario,
    env: &mut BenchEnv,
    owned: &Owned,
    cut: Option<&Cut>,
) -> anyhow::Result<Instant> {
    let http = reqwest::Client::new();
    match scenario {
        Scenario::RepeatedKills => {
            for _ in 0..5 {
                env.signal("syncway-worker", rand::random_range(0..3), "-KILL")?;
                env.start_worker(&http, &worker_vars()).await?;
                tokio::time::sleep(FAULT / 5).await;
            }
        }
        Scenario::Pause => {
            env.signal("syncway-worker", 0, "-STOP")?;
            tokio::time::sleep(FAULT).await;
            env.signal("syncway-worker", 0, "-CONT")?;
        }
        Scenario::BackendKill => {
            let client = env.client().await?;
            let deadline = Instant::now() + FAULT;
            while Instant::now() < deadline {
                client
                    .execute(
                        // Client sessions only (an autovacuum worker is a
                        // superuser's process, not syncway's).
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()
                           AND backend_type = 'client backend'",
                        &[],
                    )
                    .await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Scenario::PostgresRestart => {
            let postgres = owned.postgres.as_ref().context("no private Postgres")?;
            postgres.down()?;
            tokio::time::sleep(FAULT).await;
            postgres.up()?;
        }
        Scenario::PoolExhaustion => {
            // Idle sessions hold all but a few of max_connections (60, of
            // which 3 are reserved for superusers).
            let mut held = Vec::new();
            for _ in 0..50 {
                if let Ok(client) = env.client().await {
                    held.push(client);
                }
            }
            tokio::time::sleep(FAULT).await;
            drop(held);
        }
        Scenario::BrokerRestart => {
            let rabbit = owned.rabbit.as_ref().context("no private RabbitMQ")?;
            rabbit.stop_app()?;
            tokio::time::sleep(FAULT).await;
            rabbit.start_app()?;
        }
        Scenario::BrokerFailover => {
            let cluster = owned.cluster.as_ref().context("no private cluster")?;
            let queue = syncway_queue::Topology::new(&env.namespace).jobs_queue();
            let leader = cluster.kill_leader(&queue)?;
            let killed = Instant::now();
            eprintln!("chaos: killed {leader}, the leader of {queue}");
            // The other two go on alone; recovery counts from the death.
            tokio::time::sleep(FAULT).await;
            cluster.restart_killed()?;
            return Ok(killed);
        }
        Scenario::FreezeInCommit => {
            let frozen = freeze_inside_a_transaction(env).await?;
            tokio::time::sleep(FAULT).await;
            env.signal("syncway-worker", frozen, "-CONT")?;
        }
        Scenario::PartitionPostgres | Scenario::PartitionBroker => {
            let cut = cut.context("no partition")?;
            let proxy = match scenario {
                Scenario::PartitionPostgres => &cut.postgres,
                _ => &cut.broker,
            };
            cut.partition
                .cut(proxy.address().port())
                .map_err(anyhow::Error::msg)?;
            tokio::time::sleep(fault_length(scenario)).await;
            cut.partition.restore().map_err(anyhow::Error::msg)?;
        }
        // The node closes the channels of consumers that hold a delivery
        // longer than 3 s all along; the scenario watches it happen.
        Scenario::ConsumerTimeout => tokio::time::sleep(FAULT).await,
        Scenario::FairShareBacklog => {}
    }
    Ok(Instant::now())
}

/// Stops (SIGSTOP) a worker caught inside a transaction (a large batch's);
/// returns which worker (its place among the workers).
async fn freeze_inside_a_transaction(env: &mut BenchEnv) -> anyhow::Result<usize> {
    let client = env.client().await?;
    let in_transaction = |pid: u32| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE application_name LIKE '%-' || $1 || '-%' AND xact_start IS NOT NULL
                       AND (state = 'idle in transaction' OR wait_event = 'ClientRead')",
                    &[&pid.to_string()],
                )
                .await
                .map(|row| row.get::<_, i64>(0) > 0)
                .unwrap_or(false)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        for (n, pid) in env.pids("syncway-worker").into_iter().enumerate() {
            env.signal("syncway-worker", n, "-STOP")?;
            if in_transaction(pid).await {
                eprintln!("chaos: froze worker {pid} inside a transaction");
                return Ok(n);
            }
            env.signal("syncway-worker", n, "-CONT")?;
        }
    }
    anyhow::bail!("no worker was caught inside a transaction within a minute")
}
