//! `syncway-bench chaos`: a stream of multi-batch stub jobs across three
//! worker processes while a fault is made, then every job checked on its
//! own: terminal, completed once with exact counts, its stored entities
//! equal to the source's deterministic content. Each scenario prints its
//! recovery time (end of the fault until completions flow at 80% of their
//! earlier rate) and the longest time any job had no live owner (from its
//! lease's last renewal, or from when the database answered again, to the
//! next claim or renewal).
//!
//! `repeated-kills`, `pause` and `backend-kill` run on the shared services;
//! `postgres-restart`, `pool-exhaustion` and `broker-restart` on servers the
//! bench starts for itself ([`servers`]).

mod servers;
mod verify;
mod watch;

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::processes::{BenchEnv, Services, build_binaries};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    RepeatedKills,
    Pause,
    BackendKill,
    PostgresRestart,
    PoolExhaustion,
    BrokerRestart,
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Scenarios to run (all when none is given).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Jobs per scenario, triggered at a steady rate.
    #[arg(long, default_value_t = 60)]
    jobs: usize,
    /// Entities per job (2 ms each, in batches of 100: about 3 s a job).
    #[arg(long, default_value_t = 1500)]
    entities: u64,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_chaos";
pub(crate) const LEASE: u64 = 2;
const REAP: u64 = 1;
/// How long a fault lasts.
const FAULT: Duration = Duration::from_secs(10);
/// Triggers per second: about half of what three workers of four slots
/// finish, so that a fault, not a backlog, is what is measured.
const RATE: f64 = 2.0;

struct Outcome {
    scenario: Scenario,
    jobs: usize,
    lost: usize,
    doubled: usize,
    stuck: usize,
    recovery: Option<Duration>,
    worst_gap: Duration,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let scenarios = if options.scenario.is_empty() {
        vec![
            Scenario::RepeatedKills,
            Scenario::Pause,
            Scenario::BackendKill,
            Scenario::PostgresRestart,
            Scenario::PoolExhaustion,
            Scenario::BrokerRestart,
        ]
    } else {
        options.scenario.clone()
    };
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        eprintln!("chaos: {scenario:?}");
        match one(scenario, &options).await {
            Ok(outcome) => {
                eprintln!("chaos: {scenario:?}: {}", outcome.row());
                outcomes.push(outcome);
            }
            // One scenario that cannot run does not hide the others.
            Err(error) => eprintln!("chaos: {scenario:?} could not run: {error:#}"),
        }
    }
    println!();
    println!(
        "syncway chaos: {} jobs of {} entities per scenario, 3 workers (lease {LEASE} s, reaper every {REAP} s), faults of {} s; bound on ownerless time {} s",
        options.jobs,
        options.entities,
        FAULT.as_secs(),
        LEASE + LEASE + REAP
    );
    println!("| scenario | jobs | lost | doubled | stuck | recovery time | worst ownerless gap |");
    println!("|---|---|---|---|---|---|---|");
    for outcome in &outcomes {
        println!("{}", outcome.row());
    }
    Ok(())
}

impl Outcome {
    fn row(&self) -> String {
        let recovery = self
            .recovery
            .map(|r| format!("{:.1} s", r.as_secs_f64()))
            .unwrap_or_else(|| "n/a".into());
        format!(
            "| {:?} | {} | {} | {} | {} | {recovery} | {:.1} s |",
            self.scenario,
            self.jobs,
            self.lost,
            self.doubled,
            self.stuck,
            self.worst_gap.as_secs_f64()
        )
    }
}

/// The servers a scenario runs against.
struct Owned {
    postgres: Option<servers::PrivatePostgres>,
    rabbit: Option<servers::PrivateRabbit>,
}

async fn one(scenario: Scenario, options: &Options) -> anyhow::Result<Outcome> {
    let owned = Owned {
        postgres: matches!(
            scenario,
            Scenario::PostgresRestart | Scenario::PoolExhaustion
        )
        .then(|| servers::PrivatePostgres::start(60))
        .transpose()?,
        rabbit: matches!(scenario, Scenario::BrokerRestart)
            .then(servers::PrivateRabbit::start)
            .transpose()?,
    };
    let services = Services {
        postgres: owned
            .postgres
            .as_ref()
            .map(servers::PrivatePostgres::url)
            .unwrap_or_else(|| options.services.postgres.clone()),
        amqp: owned
            .rabbit
            .as_ref()
            .map(servers::PrivateRabbit::url)
            .unwrap_or_else(|| options.services.amqp.clone()),
        limits: options.services.limits.clone(),
    };
    let mut env = BenchEnv::create(&services).await?;
    let outcome = drive(scenario, options, &mut env, &owned).await;
    env.destroy().await?;
    outcome
}

fn worker_vars() -> Vec<(&'static str, String)> {
    vec![
        ("SYNCWAY_WORKER__LEASE_SECONDS", LEASE.to_string()),
        ("SYNCWAY_WORKER__REAP_INTERVAL_SECONDS", REAP.to_string()),
        ("SYNCWAY_WORKER__CONCURRENCY", "4".into()),
        ("SYNCWAY_DATABASE__POOL_SIZE", "4".into()),
        ("SYNCWAY_RETRY__MAX_ATTEMPTS", "50".into()),
        ("SYNCWAY_RETRY__BASE_DELAY_MS", "200".into()),
        ("SYNCWAY_RETRY__MAX_DELAY_MS", "2000".into()),
    ]
}

async fn drive(
    scenario: Scenario,
    options: &Options,
    env: &mut BenchEnv,
    owned: &Owned,
) -> anyhow::Result<Outcome> {
    let http = reqwest::Client::new();
    let api = env
        .start_api(&http, KEY, &[("SYNCWAY_DATABASE__POOL_SIZE", "4".into())])
        .await?;
    for _ in 0..3 {
        env.start_worker(&http, &worker_vars()).await?;
    }
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{api}{path}"))
            .header("x-api-key", KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
    };
    let collection: Value = call(
        reqwest::Method::POST,
        "/collections".into(),
        Some(json!({"name": "chaos"})),
    )
    .send()
    .await?
    .json()
    .await?;
    let config = json!({"entity_count": options.entities, "delay_ms_per_entity": 2});
    let mut connections = Vec::new();
    for _ in 0..options.jobs {
        let body: Value = call(
            reqwest::Method::POST,
            "/source-connections".into(),
            Some(
                json!({"short_name": "stub", "readable_collection_id": collection["readable_id"],
                        "config": config}),
            ),
        )
        .send()
        .await?
        .json()
        .await?;
        connections.push(uuid(&body)?);
    }
    let watch = watch::Watch::start(env).await?;
    let started = Instant::now();
    let fault_at = Duration::from_secs(5);
    let mut jobs = Vec::new();
    let mut fault_end = None;
    let mut faulted = false;
    for (n, connection) in connections.iter().enumerate() {
        // Triggers go on through the fault; one refused (503 while
        // Postgres is away) is tried again.
        let due = Duration::from_secs_f64(n as f64 / RATE);
        while started.elapsed() < due {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !faulted && started.elapsed() >= fault_at {
                faulted = true;
                fault_end = Some(fault(scenario, env, owned).await?);
            }
        }
        loop {
            let response = call(
                reqwest::Method::POST,
                format!("/source-connections/{connection}/run"),
                None,
            )
            .send()
            .await;
            match response {
                Ok(response) if response.status().is_success() => {
                    jobs.push((*connection, uuid(&response.json().await?)?));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    if !faulted {
        fault_end = Some(fault(scenario, env, owned).await?);
    }
    let fault_end = fault_end.context("no fault was made")?;
    let (lost, doubled, stuck) = verify::check(env, &jobs, options.entities).await?;
    let worst_gap = watch.stop(env).await?;
    let recovery = verify::recovery(env, &jobs, started, fault_at, fault_end).await?;
    Ok(Outcome {
        scenario,
        jobs: jobs.len(),
        lost,
        doubled,
        stuck,
        recovery,
        worst_gap,
    })
}

fn uuid(body: &Value) -> anyhow::Result<Uuid> {
    body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("no id in {body}"))
}

/// Makes the scenario's fault; returns when it ended (since the start).
async fn fault(scenario: Scenario, env: &mut BenchEnv, owned: &Owned) -> anyhow::Result<Instant> {
    let http = reqwest::Client::new();
    match scenario {
        Scenario::RepeatedKills => {
            for round in 0..5 {
                env.signal("syncway-worker", round % 3, "-KILL")?;
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
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
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
            rabbit.down()?;
            tokio::time::sleep(FAULT).await;
            rabbit.up()?;
        }
    }
    Ok(Instant::now())
}
