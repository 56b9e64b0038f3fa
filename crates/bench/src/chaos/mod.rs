//! `syncway-bench chaos`: a stream of multi-batch stub jobs across three
//! worker processes while a fault is made, then every job checked on its
//! own: terminal, completed once with exact counts, its stored entities
//! equal to the source's deterministic content. Each scenario prints its
//! recovery time (end of the fault until completions flow at 80% of their
//! earlier rate) and the longest time any job had no live owner (from its
//! lease's last renewal, or from when the database answered again, to the
//! next claim or renewal).
//!
//! `repeated-kills`, `pause`, `backend-kill`, `freeze-in-commit` and the
//! partitions run on the shared services; `postgres-restart`,
//! `pool-exhaustion`, `broker-restart`, `broker-failover` and
//! `consumer-timeout` on servers the bench starts for itself
//! ([`servers`], `syncway_testkit::rabbit`). `fair-share-backlog` measures what a held
//! back backlog costs ([`backlog`]).

mod backlog;
mod drive;
mod faults;
pub(crate) mod servers;
mod verify;
mod watch;

use std::time::Duration;

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
    /// A worker frozen (SIGSTOP) inside a large batch's transaction; jobs
    /// of a million entities each.
    FreezeInCommit,
    /// A worker in a network namespace of its own, its traffic to Postgres
    /// dropped for three leases.
    PartitionPostgres,
    /// The same, its traffic to the broker.
    PartitionBroker,
    /// A private RabbitMQ node with a `consumer_timeout` of 3 s: it closes
    /// the channels of consumers that run jobs longer than that.
    ConsumerTimeout,
    /// One organization's backlog held back by its share: what waiting
    /// costs in claims and publishes.
    FairShareBacklog,
}

impl Scenario {
    const ALL: [Scenario; 12] = [
        Scenario::RepeatedKills,
        Scenario::Pause,
        Scenario::BackendKill,
        Scenario::PostgresRestart,
        Scenario::PoolExhaustion,
        Scenario::BrokerRestart,
        Scenario::BrokerFailover,
        Scenario::FreezeInCommit,
        Scenario::PartitionPostgres,
        Scenario::PartitionBroker,
        Scenario::ConsumerTimeout,
        Scenario::FairShareBacklog,
    ];
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
    /// Entities per job of `freeze-in-commit` (as fast as they go, in
    /// large batches).
    #[arg(long, default_value_t = 1_000_000)]
    large_entities: u64,
    /// Jobs of `fair-share-backlog` (one organization, its share 2).
    #[arg(long, default_value_t = 10_000)]
    backlog: usize,
    /// Runs of every scenario, one after the other.
    #[arg(long, default_value_t = 1)]
    runs: usize,
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
    /// The most jobs one worker ran at once (its concurrency is 4).
    most_in_flight: i64,
    /// What the scenario measured besides (the backlog's costs).
    note: String,
    /// Nothing lost, doubled or stuck, no gap over the bound, no worker
    /// over its concurrency.
    clean: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let chosen = if options.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        options.scenario.clone()
    };
    let scenarios: Vec<Scenario> = chosen
        .iter()
        .flat_map(|scenario| std::iter::repeat_n(*scenario, options.runs.max(1)))
        .collect();
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
    println!(
        "| scenario | jobs | lost | doubled | stuck | recovery time | worst ownerless gap | most in flight (of 4) | measured |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for outcome in &outcomes {
        println!("{}", outcome.row());
    }
    let over = outcomes
        .iter()
        .filter(|o| o.worst_gap > drive::bound())
        .count();
    let unclean = outcomes.iter().filter(|o| !o.clean).count();
    println!(
        "{}",
        if over + unclean == 0 && outcomes.len() == scenarios_run {
            "every run: 0 lost, 0 doubled, 0 stuck, every gap within the bound, no worker over its concurrency".to_owned()
        } else {
            format!(
                "NOT met: {unclean} run(s) lost, doubled or left jobs stuck, or ran a worker over its concurrency; {over} had a gap over the bound; {} could not run",
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
            "| {:?} | {} | {} | {} | {} | {recovery} | {:.1} s | {} | {} |",
            self.scenario,
            self.jobs,
            self.lost,
            self.doubled,
            self.stuck,
            self.worst_gap.as_secs_f64(),
            self.most_in_flight,
            self.note
        )
    }
}

/// The servers a scenario runs against.
struct Owned {
    postgres: Option<servers::PrivatePostgres>,
    rabbit: Option<syncway_testkit::rabbit::PrivateRabbit>,
    cluster: Option<syncway_testkit::rabbit::PrivateCluster>,
}

async fn one(scenario: Scenario, options: &Options) -> anyhow::Result<Outcome> {
    let owned = Owned {
        postgres: matches!(
            scenario,
            Scenario::PostgresRestart | Scenario::PoolExhaustion
        )
        .then(|| servers::PrivatePostgres::start(60))
        .transpose()?,
        rabbit: match scenario {
            Scenario::BrokerRestart => Some(syncway_testkit::rabbit::PrivateRabbit::start(
                "single", None,
            )?),
            Scenario::ConsumerTimeout => Some(syncway_testkit::rabbit::PrivateRabbit::start(
                "timeout",
                Some(syncway_testkit::rabbit::SHORT_CONSUMER_TIMEOUT),
            )?),
            _ => None,
        },
        cluster: matches!(scenario, Scenario::BrokerFailover)
            .then(syncway_testkit::rabbit::PrivateCluster::start)
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
    let outcome = match scenario {
        Scenario::FairShareBacklog => backlog::drive(options, &mut env).await,
        _ => drive::drive(scenario, options, &mut env, &owned).await,
    };
    env.destroy().await?;
    // The logs are kept only to explain a failure or a gap over the bound.
    if let Ok(outcome) = &outcome
        && outcome.clean
    {
        let _ = std::fs::remove_dir_all(&logs);
    }
    outcome
}
