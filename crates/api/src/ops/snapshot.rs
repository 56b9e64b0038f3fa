//! The snapshot of the deployment's figures: every API process runs
//! [`run`]; at each interval one of them (whichever takes the advisory lock
//! while the snapshot is stale) gathers the figures and writes the row, and
//! every one reads it into its gauges. A scrape reads memory only, and
//! twenty replicas cost what one does.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use syncway_queue::{Broker, Topology};
use syncway_store::{Pool, ops};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::figures::{self, BrokerSources, OpsFigures};

type Labels = Vec<(&'static str, String)>;

/// The deployment's gauges (CONTRACT.md §6), set from the snapshot.
#[derive(Clone, Default)]
pub struct OpsMetrics {
    queue_depth: Family<Labels, Gauge>,
    queue_consumers: Family<Labels, Gauge>,
    dead_letter_depth: Gauge,
    outbox_pending: Gauge,
    jobs: Family<Labels, Gauge>,
    oldest_pending_age: Gauge<f64, AtomicU64>,
    workers: Gauge,
    running_jobs: Family<Labels, Gauge>,
    snapshot_age: Gauge<f64, AtomicU64>,
}

impl OpsMetrics {
    /// Registers the families on `registry` (prefix `syncway`).
    pub fn new(registry: &mut Registry) -> Self {
        let m = OpsMetrics::default();
        registry.register(
            "queue_depth",
            "Messages in a queue of this deployment, by state: ready (waiting) or unacked (delivered, in flight; from the management API)",
            m.queue_depth.clone(),
        );
        registry.register(
            "queue_consumers",
            "Consumers of a queue",
            m.queue_consumers.clone(),
        );
        registry.register(
            "dead_letter_depth",
            "Messages in the dead-letter queue",
            m.dead_letter_depth.clone(),
        );
        registry.register(
            "outbox_pending",
            "Job messages committed and not yet published",
            m.outbox_pending.clone(),
        );
        registry.register(
            "jobs",
            "Active jobs by status now (pending, running, cancelling); jobs that ever ended by status (completed, failed, cancelled: counted as they end, not lowered by retention)",
            m.jobs.clone(),
        );
        registry.register(
            "oldest_pending_job_age_seconds",
            "Age of the oldest pending job (0 when none waits)",
            m.oldest_pending_age.clone(),
        );
        registry.register(
            "workers",
            "Worker processes seen within their last three heartbeats",
            m.workers.clone(),
        );
        registry.register(
            "running_jobs",
            "Running jobs by organization: the ten with the most, the rest as other",
            m.running_jobs.clone(),
        );
        registry.register(
            "ops_snapshot_age_seconds",
            "How old the figures above were when last read",
            m.snapshot_age.clone(),
        );
        m
    }

    fn set(&self, figures: &OpsFigures, workers: i64, age_seconds: f64) {
        self.queue_depth.clear();
        self.queue_consumers.clear();
        for queue in &figures.queues {
            let label =
                |state: &str| vec![("queue", queue.name.clone()), ("state", state.to_owned())];
            if let Some(ready) = queue.ready {
                self.queue_depth
                    .get_or_create(&label("ready"))
                    .set(i64::try_from(ready).unwrap_or(i64::MAX));
            }
            if let Some(unacked) = queue.unacked {
                self.queue_depth
                    .get_or_create(&label("unacked"))
                    .set(i64::try_from(unacked).unwrap_or(i64::MAX));
            }
            if let Some(consumers) = queue.consumers {
                self.queue_consumers
                    .get_or_create(&vec![("queue", queue.name.clone())])
                    .set(i64::try_from(consumers).unwrap_or(i64::MAX));
            }
        }
        let dead = figures.dead_letters().and_then(|q| q.ready).unwrap_or(0);
        self.dead_letter_depth
            .set(i64::try_from(dead).unwrap_or(i64::MAX));
        self.outbox_pending.set(figures.outbox_pending);
        self.jobs.clear();
        for status in syncway_model::JobStatus::ALL {
            let n = figures.jobs.get(status.as_str()).copied().unwrap_or(0);
            self.jobs
                .get_or_create(&vec![("status", status.as_str().to_owned())])
                .set(n);
        }
        self.oldest_pending_age
            .set(figures.oldest_pending_age_seconds.unwrap_or(0.0));
        self.workers.set(workers);
        self.running_jobs.clear();
        // `other` is always there (0 when every running job's organization
        // has a series of its own).
        self.running_jobs
            .get_or_create(&vec![("organization", "other".to_owned())])
            .set(0);
        for (organization, n) in &figures.running_by_organization {
            self.running_jobs
                .get_or_create(&vec![("organization", organization.clone())])
                .set(*n);
        }
        self.snapshot_age.set(age_seconds);
    }
}

/// What the console's per-minute sample takes from the figures.
fn gauges(figures: &OpsFigures, workers: usize) -> syncway_store::console::Gauges {
    let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let jobs = figures.jobs_queue();
    let manual = figures.manual_queue();
    let both =
        |f: fn(&figures::QueueFigures) -> Option<u64>| match (jobs.and_then(f), manual.and_then(f))
        {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
    syncway_store::console::Gauges {
        ready: count(both(|q| q.ready)),
        unacked: count(both(|q| q.unacked)),
        oldest_pending_seconds: figures.oldest_pending_age_seconds,
        workers: i64::try_from(workers).unwrap_or(i64::MAX),
        dead_letters: count(figures.dead_letters().and_then(|q| q.ready)),
        outbox_pending: figures.outbox_pending,
    }
}

/// What the refresher needs.
pub struct Refresher {
    pub pool: Pool,
    pub amqp_url: String,
    pub namespace: String,
    pub management_url: Option<String>,
    pub interval: Duration,
    pub metrics: OpsMetrics,
    /// The latest figures read, for `/admin/queue`.
    pub latest: Arc<RwLock<Option<OpsFigures>>>,
}

impl Refresher {
    pub async fn run(self, stop: CancellationToken) {
        let http = reqwest::Client::new();
        let topology = Topology::new(&self.namespace);
        let vhost = super::management::vhost_of(&self.amqp_url);
        let mut broker: Option<Broker> = None;
        loop {
            if broker.as_ref().is_none_or(|b| !b.is_connected()) {
                broker = Broker::connect(&self.amqp_url, &self.namespace, "syncway-ops")
                    .await
                    .ok();
            }
            let sources = BrokerSources {
                broker: broker.as_ref(),
                http: &http,
                management_url: self.management_url.as_deref(),
                vhost: &vhost,
                topology: &topology,
            };
            if let Err(error) = self.refresh(&sources).await {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "could not refresh the operations snapshot");
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Refreshes the snapshot if this process is the one to, then reads it.
    async fn refresh(&self, sources: &BrokerSources<'_>) -> Result<(), syncway_store::StoreError> {
        let mut client = self.pool.get().await?;
        // Workers are read live (not from the snapshot), once a refresh:
        // for the gauge, and for the console's sample when this process
        // writes one.
        let alive = ops::workers(&client)
            .await?
            .iter()
            .filter(|w| w.alive)
            .count();
        let transaction = client.transaction().await?;
        if ops::claim_refresh(&transaction, self.interval.mul_f64(0.9)).await? {
            let gathered = figures::collect(&transaction, sources).await?;
            let json = serde_json::to_value(&gathered)
                .map_err(|error| syncway_store::StoreError::Corrupt(error.to_string()))?;
            ops::write_snapshot(&transaction, &json).await?;
            syncway_store::console::sample(&transaction, &gauges(&gathered, alive)).await?;
        }
        transaction.commit().await?;
        if let Some((taken_at, json)) = ops::read_snapshot(&client).await? {
            let read: OpsFigures = serde_json::from_value(json)
                .map_err(|error| syncway_store::StoreError::Corrupt(error.to_string()))?;
            let age = (chrono::Utc::now() - taken_at).num_milliseconds() as f64 / 1000.0;
            self.metrics.set(
                &read,
                i64::try_from(alive).unwrap_or(i64::MAX),
                age.max(0.0),
            );
            *self.latest.write().await = Some(read);
        }
        Ok(())
    }
}
