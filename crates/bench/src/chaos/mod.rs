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

use std::collections::HashMap;
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
const LEASE: u64 = 2;
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
    let watch = Watch::start(env).await?;
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
    let (lost, doubled, stuck) = check(env, &jobs, options.entities).await?;
    let worst_gap = watch.stop(env).await?;
    let recovery = recovery(env, &jobs, started, fault_at, fault_end).await?;
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

/// Per job: lost (ended other than completed), doubled (counts beyond the
/// source, or stored content other than the source's), stuck (not ended).
async fn check(
    env: &BenchEnv,
    jobs: &[(Uuid, Uuid)],
    entities: u64,
) -> anyhow::Result<(usize, usize, usize)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let client = loop {
        match env.client().await {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(error) => return Err(error),
        }
    };
    let ids: Vec<Uuid> = jobs.iter().map(|(_, job)| *job).collect();
    while Instant::now() < deadline {
        let active: i64 = client
            .query_one(
                "SELECT count(*) FROM sync_jobs WHERE id = ANY($1) AND active",
                &[&ids],
            )
            .await?
            .get(0);
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let config = syncway_model::StubConfig {
        entity_count: entities,
        delay_ms_per_entity: 2,
        ..syncway_model::StubConfig::default()
    };
    let expected: HashMap<String, Vec<u8>> = (0..entities)
        .map(|i| {
            let entity = syncway_connectors::stub::entity(&config, i);
            let hash = syncway_model::content_hash(&entity.payload).to_vec();
            (entity.id, hash)
        })
        .collect();
    let (mut lost, mut doubled, mut stuck) = (0, 0, 0);
    for (connection, job) in jobs {
        let row = client
            .query_one(
                "SELECT status, entities_inserted, entities_updated, entities_deleted FROM sync_jobs WHERE id = $1",
                &[job],
            )
            .await?;
        let status: String = row.get(0);
        let counts: (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
        match status.as_str() {
            "completed" => {}
            "pending" | "running" | "cancelling" => {
                stuck += 1;
                continue;
            }
            _ => {
                lost += 1;
                continue;
            }
        }
        let stored = client
            .query(
                "SELECT entity_id, content_hash FROM entities WHERE source_connection_id = $1",
                &[connection],
            )
            .await?;
        let same = stored.len() == expected.len()
            && stored.iter().all(|row| {
                expected.get(row.get::<_, &str>(0)).map(Vec::as_slice)
                    == Some(row.get::<_, &[u8]>(1))
            });
        if counts != (entities as i64, 0, 0) || !same {
            doubled += 1;
        }
    }
    Ok((lost, doubled, stuck))
}

/// From the end of the fault until completions flow at 80% of their rate
/// in the 5 s before it (in 2 s windows).
async fn recovery(
    env: &BenchEnv,
    jobs: &[(Uuid, Uuid)],
    started: Instant,
    fault_at: Duration,
    fault_end: Instant,
) -> anyhow::Result<Option<Duration>> {
    let client = env.client().await?;
    let ids: Vec<Uuid> = jobs.iter().map(|(_, job)| *job).collect();
    let since: Vec<f64> = client
        .query(
            "SELECT extract(epoch FROM completed_at - (now() - make_interval(secs => $2)))::float8
             FROM sync_jobs WHERE id = ANY($1) AND completed_at IS NOT NULL",
            &[&ids, &started.elapsed().as_secs_f64()],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let before = since
        .iter()
        .filter(|t| **t >= fault_at.as_secs_f64() - 5.0 && **t < fault_at.as_secs_f64())
        .count() as f64
        / 5.0;
    let end = (fault_end - started).as_secs_f64();
    let target = (before * 0.8 * 2.0).max(1.0);
    let mut t = end;
    let last = since.iter().copied().fold(end, f64::max);
    while t <= last {
        let window = since.iter().filter(|s| **s >= t && **s < t + 2.0).count() as f64;
        if window >= target {
            return Ok(Some(Duration::from_secs_f64(t - end)));
        }
        t += 0.1;
    }
    Ok(None)
}

/// Samples every job's phase every 100 ms; keeps the longest time any job
/// had no live owner.
struct Watch {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Duration>,
}

impl Watch {
    async fn start(env: &BenchEnv) -> anyhow::Result<Self> {
        let url = env.database_url();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut open: HashMap<Uuid, Instant> = HashMap::new();
            let mut worst = Duration::ZERO;
            let mut client = None;
            // Gaps are counted while the database answers: a job cannot
            // be claimed (nor its lease renewed) while it is away.
            let mut reachable_since = Instant::now();
            while !stopped.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if client.is_none() {
                    client = connect(&url).await;
                    reachable_since = Instant::now();
                }
                let Some(db) = &client else { continue };
                let rows = match db
                    .query(
                        "SELECT id, job_phase(status, lease_owner, lease_expires_at, retry_at),
                                extract(epoch FROM now() - (lease_expires_at
                                    - make_interval(secs => $1)))::float8
                         FROM sync_jobs WHERE started_at IS NOT NULL",
                        &[&(LEASE as f64)],
                    )
                    .await
                {
                    Ok(rows) => rows,
                    Err(_) => {
                        // The server went away (a scenario's fault): the
                        // open gaps go on counting.
                        client = None;
                        continue;
                    }
                };
                for row in rows {
                    let id: Uuid = row.get(0);
                    let phase: String = row.get(1);
                    if matches!(phase.as_str(), "expired" | "handed_back") {
                        let since = row.get::<_, Option<f64>>(2).unwrap_or(0.0).max(0.0);
                        let renewed = Instant::now() - Duration::from_secs_f64(since);
                        open.entry(id)
                            .or_insert_with(|| renewed.max(reachable_since));
                    } else if let Some(start) = open.remove(&id) {
                        worst = worst.max(start.elapsed());
                    }
                }
            }
            worst
        });
        Ok(Watch { stop, task })
    }

    async fn stop(self, _env: &BenchEnv) -> anyhow::Result<Duration> {
        self.stop.cancel();
        Ok(self.task.await?)
    }
}

async fn connect(url: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}
