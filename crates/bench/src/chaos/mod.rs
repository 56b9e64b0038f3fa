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

mod rabbit;
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
    BrokerFailover,
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
    /// Nothing lost, doubled or stuck, and no gap over the bound.
    clean: bool,
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
            Scenario::BrokerFailover,
        ]
    } else {
        options.scenario.clone()
    };
    let mut outcomes = Vec::new();
    let scenarios_run = scenarios.len();
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
        "syncway chaos: {} jobs of {} entities per scenario, 3 workers (lease {LEASE} s, reaper every {REAP} s), faults of {} s; bound on ownerless time {} s (lease + grace + reaper interval) + 0.5 s of delivery",
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
    let over = outcomes.iter().filter(|o| o.worst_gap > bound()).count();
    let unclean = outcomes
        .iter()
        .filter(|o| o.lost + o.doubled + o.stuck > 0)
        .count();
    println!(
        "{}",
        if over + unclean == 0 && outcomes.len() == scenarios_run {
            "every scenario: 0 lost, 0 doubled, 0 stuck, every gap within the bound".to_owned()
        } else {
            format!(
                "NOT met: {unclean} scenario(s) lost, doubled or left jobs stuck, {over} had a gap over the bound, {} could not run",
                scenarios_run - outcomes.len()
            )
        }
    );
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
    rabbit: Option<rabbit::PrivateRabbit>,
    cluster: Option<rabbit::PrivateCluster>,
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
            .then(|| rabbit::PrivateRabbit::start("single"))
            .transpose()?,
        cluster: matches!(scenario, Scenario::BrokerFailover)
            .then(rabbit::PrivateCluster::start)
            .transpose()?,
    };
    let services = Services {
        postgres: owned
            .postgres
            .as_ref()
            .map(servers::PrivatePostgres::url)
            .unwrap_or_else(|| options.services.postgres.clone()),
        amqp: match (&owned.rabbit, &owned.cluster) {
            (Some(rabbit), _) => rabbit.url(),
            (_, Some(cluster)) => cluster.urls(),
            _ => options.services.amqp.clone(),
        },
        limits: options.services.limits.clone(),
    };
    let mut env = BenchEnv::create(&services).await?;
    let logs = std::env::temp_dir().join(format!("syncway-chaos-{}", env.namespace));
    env.keep_logs(&logs)?;
    eprintln!("chaos: {scenario:?}: process logs in {}", logs.display());
    let outcome = drive(scenario, options, &mut env, &owned).await;
    env.destroy().await?;
    // The logs are kept only to explain a failure or a gap over the bound.
    if let Ok(outcome) = &outcome
        && outcome.clean
    {
        let _ = std::fs::remove_dir_all(&logs);
    }
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
    let watch = watch::Watch::start(env, bound()).await?;
    let started = Instant::now();
    // After ten seconds completions flow at the trigger rate: the rate the
    // recovery is measured against.
    let fault_at = Duration::from_secs(10);
    // Triggers go on at their rate through the fault, which runs beside
    // them; a trigger refused (503 while Postgres is away) is tried again.
    let triggering = async {
        let mut jobs = Vec::new();
        for (n, connection) in connections.iter().enumerate() {
            tokio::time::sleep_until((started + Duration::from_secs_f64(n as f64 / RATE)).into())
                .await;
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
        anyhow::Ok(jobs)
    };
    let faulting = async {
        tokio::time::sleep_until((started + fault_at).into()).await;
        fault(scenario, env, owned).await
    };
    let (jobs, fault_end) = tokio::join!(triggering, faulting);
    let (jobs, fault_end) = (jobs?, fault_end?);
    let (lost, doubled, stuck) = verify::check(env, &jobs, options.entities).await?;
    let watched = watch.stop().await?;
    explain(env, &watched);
    let worst_gap = watched.worst;
    let recovery = verify::recovery(env, &jobs, started, fault_at, fault_end).await?;
    Ok(Outcome {
        scenario,
        jobs: jobs.len(),
        lost,
        doubled,
        stuck,
        recovery,
        worst_gap,
        clean: lost == 0 && doubled == 0 && stuck == 0 && watched.over.is_empty(),
    })
}

/// The bound on a job's ownerless time: a lease, a lease of grace, and the
/// reaper's interval, plus half a second for the relay and the broker.
fn bound() -> Duration {
    Duration::from_secs(LEASE + LEASE + REAP) + Duration::from_millis(500)
}

/// Prints, for each job whose gap passed the bound, what the sampler saw
/// and every log line that names it.
fn explain(env: &BenchEnv, watched: &watch::Watched) {
    for (job, gap, history) in &watched.over {
        eprintln!(
            "chaos: job {job} had no live owner for {:.1} s; its history:",
            gap.as_secs_f64()
        );
        for (at, state) in &history.changes {
            eprintln!("  {:7.2} s  {state}", at.as_secs_f64());
        }
        let id = job.to_string();
        for file in env.log_files() {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            for line in text.lines().filter(|line| line.contains(&id)) {
                eprintln!("  {}: {line}", name.as_deref().unwrap_or("?"));
            }
        }
    }
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
    }
    Ok(Instant::now())
}
