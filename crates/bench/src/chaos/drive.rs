//! One scenario run: three worker processes (one of them in a network
//! namespace for the partitions), a stream of stub jobs triggered at a
//! steady rate, the fault at ten seconds, then every job checked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use syncway_testkit::{Partition, Proxy};
use uuid::Uuid;

use super::{
    FAULT, KEY, LEASE, Options, Outcome, Owned, RATE, REAP, Scenario, faults, verify, watch,
};
use crate::processes::BenchEnv;

pub(super) fn worker_vars() -> Vec<(&'static str, String)> {
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

/// What a scenario's jobs are.
#[derive(Debug, Clone, Copy)]
pub(super) struct Workload {
    pub jobs: usize,
    pub entities: u64,
    pub delay_ms: u64,
    /// Triggers per second.
    pub rate: f64,
}

fn workload(scenario: Scenario, options: &Options) -> Workload {
    match scenario {
        // Three syncs of a million entities in large batches, as fast as
        // they go: a worker spends most of its time inside a transaction.
        Scenario::FreezeInCommit => Workload {
            jobs: 3,
            entities: options.large_entities,
            delay_ms: 0,
            rate: 1.0,
        },
        // Jobs of 6 s, longer than the node's consumer_timeout of 3 s.
        Scenario::ConsumerTimeout => Workload {
            jobs: options.jobs,
            entities: 3000,
            delay_ms: 2,
            rate: RATE,
        },
        _ => Workload {
            jobs: options.jobs,
            entities: options.entities,
            delay_ms: 2,
            rate: RATE,
        },
    }
}

/// A worker's links to Postgres and RabbitMQ through proxies on the host's
/// end of its namespace's link, which the partitions cut.
pub(super) struct Cut {
    pub postgres: Proxy,
    pub broker: Proxy,
    pub partition: Partition,
}

impl Cut {
    async fn new(env: &BenchEnv) -> anyhow::Result<Self> {
        let partition = Partition::new().map_err(anyhow::Error::msg)?;
        let at = SocketAddr::from((partition.host_ip(), 0));
        let postgres_at = address_of(&env.server, 5432)?;
        let broker_at = address_of(&env.amqp, 5672)?;
        Ok(Cut {
            postgres: Proxy::start(at, postgres_at).await?,
            broker: Proxy::start(at, broker_at).await?,
            partition,
        })
    }

    /// The worker's settings: its services through the proxies.
    fn vars(&self, env: &BenchEnv) -> anyhow::Result<Vec<(&'static str, String)>> {
        let mut database = url::Url::parse(&env.database_url())?;
        database
            .set_ip_host(self.postgres.address().ip())
            .map_err(|()| anyhow::anyhow!("a postgres URL without a host"))?;
        database
            .set_port(Some(self.postgres.address().port()))
            .map_err(|()| anyhow::anyhow!("a postgres URL without a port"))?;
        let mut amqp = url::Url::parse(&env.amqp)?;
        amqp.set_ip_host(self.broker.address().ip())
            .map_err(|()| anyhow::anyhow!("an AMQP URL without a host"))?;
        amqp.set_port(Some(self.broker.address().port()))
            .map_err(|()| anyhow::anyhow!("an AMQP URL without a port"))?;
        Ok(vec![
            ("SYNCWAY_DATABASE__URL", database.to_string()),
            ("SYNCWAY_AMQP__URL", amqp.to_string()),
        ])
    }
}

/// `host:port` of a service URL, resolved.
fn address_of(url: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    let parsed = url::Url::parse(url)?;
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let port = parsed.port().unwrap_or(default_port);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .with_context(|| format!("{host} does not resolve"))
}

pub(super) async fn drive(
    scenario: Scenario,
    options: &Options,
    env: &mut BenchEnv,
    owned: &Owned,
) -> anyhow::Result<Outcome> {
    let load = workload(scenario, options);
    let http = reqwest::Client::new();
    let api = env
        .start_api(&http, KEY, &[("SYNCWAY_DATABASE__POOL_SIZE", "4".into())])
        .await?;
    // The partitions' first worker runs in a namespace of its own.
    let cut = match scenario {
        Scenario::PartitionPostgres | Scenario::PartitionBroker => Some(Cut::new(env).await?),
        _ => None,
    };
    let mut workers = Vec::new();
    for n in 0..3 {
        let metrics = match (&cut, n) {
            (Some(cut), 0) => {
                let mut vars = worker_vars();
                vars.extend(cut.vars(env)?);
                let prefix = cut.partition.prefix();
                env.start_worker_in(&http, &prefix, cut.partition.ns_ip(), &vars)
                    .await?
            }
            _ => env.start_worker(&http, &worker_vars()).await?,
        };
        workers.push(metrics);
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
    let config = json!({"entity_count": load.entities, "delay_ms_per_entity": load.delay_ms});
    let mut connections = Vec::new();
    for _ in 0..load.jobs {
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
            let at = started + Duration::from_secs_f64(n as f64 / load.rate);
            tokio::time::sleep_until(at.into()).await;
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
        faults::fault(scenario, env, owned, cut.as_ref()).await
    };
    let (jobs, fault_end) = tokio::join!(triggering, faulting);
    let (jobs, fault_end) = (jobs?, fault_end?);
    let stub = syncway_model::StubConfig {
        entity_count: load.entities,
        delay_ms_per_entity: load.delay_ms,
        ..syncway_model::StubConfig::default()
    };
    let (lost, doubled, stuck) = verify::check(env, &jobs, &stub).await?;
    let watched = watch.stop().await?;
    explain(env, &watched);
    let worst_gap = watched.worst;
    let recovery = verify::recovery(env, &jobs, started, fault_at, fault_end).await?;
    // The workers of the start (some may have been killed and replaced).
    let mut reconnects = 0.0;
    for url in &workers {
        let name = "syncway_worker_consumer_reconnects_total";
        reconnects += crate::processes::metric(&http, url, name)
            .await
            .unwrap_or(0.0);
    }
    Ok(Outcome {
        scenario,
        jobs: jobs.len(),
        lost,
        doubled,
        stuck,
        recovery,
        worst_gap,
        most_in_flight: watched.most_in_flight,
        note: format!("{reconnects} consumer reconnects"),
        clean: lost == 0
            && doubled == 0
            && stuck == 0
            && watched.over.is_empty()
            && watched.most_in_flight <= 4,
    })
}

/// The bound on a job's ownerless time: a lease, a lease of grace, and the
/// reaper's interval, plus half a second for the relay and the broker.
pub(super) fn bound() -> Duration {
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

pub(super) fn uuid(body: &Value) -> anyhow::Result<Uuid> {
    body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("no id in {body}"))
}

/// How long a fault of `scenario` lasts: three leases for a partition.
pub(super) fn fault_length(scenario: Scenario) -> Duration {
    match scenario {
        Scenario::PartitionPostgres | Scenario::PartitionBroker => Duration::from_secs(3 * LEASE),
        _ => FAULT,
    }
}
