//! The worker's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 22))
}

/// Adds each non-zero count to `family`, labelled `label` = its name.
pub fn add_counts(family: &Family<Labels, Counter>, label: &'static str, counts: &[(&str, u64)]) {
    for &(name, count) in counts {
        if count > 0 {
            family
                .get_or_create(&vec![(label, name.to_owned())])
                .inc_by(count);
        }
    }
}

#[derive(Clone)]
pub struct WorkerMetrics {
    pub jobs_claimed: Counter,
    pub jobs_finished: Family<Labels, Counter>,
    pub jobs_running: Gauge,
    pub job_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub duplicate_deliveries: Counter,
    pub dropped_messages: Counter,
    pub dead_lettered: Counter,
    pub entities: Family<Labels, Counter>,
    pub retries_scheduled: Counter,
    pub cancels_received: Counter,
    pub reaped: Family<Labels, Counter>,
    /// Reaper passes that ran to the end.
    pub reaper_passes: Counter,
    /// Consumer channels the broker closed (or lost) while this worker ran.
    pub consumer_reconnects: Counter,
    pub fair_share_waits: Counter,
    /// The memory budget's size, what its batches hold now, and the
    /// reservations that had to wait.
    pub memory_budget: Gauge,
    pub memory_reserved: Gauge,
    pub memory_waits: Counter,
    /// Rows the retention loop removed, by table.
    pub retention_removed: Family<Labels, Counter>,
    /// Webhook attempts, by outcome (delivered, retrying, failed).
    pub webhook_deliveries: Family<Labels, Counter>,
    pub webhook_seconds: Histogram,
    /// Deliveries due and not held, deployment-wide.
    pub webhook_backlog: Gauge,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl WorkerMetrics {
    /// Registers the families: the ones CONTRACT.md §6 names at the root
    /// (`syncway_jobs_in_flight`, `syncway_job_duration_seconds`,
    /// `syncway_entities_total`, `syncway_job_retries_total`), the rest
    /// under `syncway_worker_`.
    pub fn new(root: &mut Registry) -> Self {
        let metrics = WorkerMetrics {
            jobs_claimed: Counter::default(),
            jobs_finished: Family::default(),
            jobs_running: Gauge::default(),
            job_seconds: Family::new_with_constructor(duration_histogram),
            duplicate_deliveries: Counter::default(),
            dropped_messages: Counter::default(),
            dead_lettered: Counter::default(),
            entities: Family::default(),
            retries_scheduled: Counter::default(),
            cancels_received: Counter::default(),
            reaped: Family::default(),
            reaper_passes: Counter::default(),
            consumer_reconnects: Counter::default(),
            fair_share_waits: Counter::default(),
            memory_budget: Gauge::default(),
            memory_reserved: Gauge::default(),
            memory_waits: Counter::default(),
            retention_removed: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_seconds: duration_histogram(),
            webhook_backlog: Gauge::default(),
        };
        // Every outcome from zero, so that a rate over them exists before
        // the first delivery (and the dashboard has its series).
        for outcome in ["delivered", "retrying", "failed"] {
            drop(
                metrics
                    .webhook_deliveries
                    .get_or_create(&vec![("outcome", outcome.to_owned())]),
            );
        }
        root.register(
            "jobs_in_flight",
            "Jobs running in this worker process now",
            metrics.jobs_running.clone(),
        );
        root.register(
            "job_duration_seconds",
            "Run time of the jobs this worker ended, by outcome (a final status, lost_lease, handed_back or retrying)",
            metrics.job_seconds.clone(),
        );
        root.register(
            "entities",
            "Entities written, by outcome (inserted, updated, deleted, failed)",
            metrics.entities.clone(),
        );
        root.register(
            "job_retries",
            "Transient failures sent to a delay queue for another attempt",
            metrics.retries_scheduled.clone(),
        );
        root.register(
            "retention_removed",
            "Rows the retention loop of this process removed, by table",
            metrics.retention_removed.clone(),
        );
        root.register(
            "webhook_deliveries",
            "Webhook attempts this process made, by outcome (delivered, retrying, failed)",
            metrics.webhook_deliveries.clone(),
        );
        root.register(
            "webhook_delivery_seconds",
            "How long this process's webhook attempts took",
            metrics.webhook_seconds.clone(),
        );
        root.register(
            "webhook_backlog",
            "Webhook deliveries due and not being sent, deployment-wide (every worker reports it: use max)",
            metrics.webhook_backlog.clone(),
        );
        let worker = root.sub_registry_with_prefix("worker");
        worker.register(
            "jobs_claimed",
            "Jobs this worker claimed",
            metrics.jobs_claimed.clone(),
        );
        worker.register(
            "jobs_finished",
            "Jobs this worker ended, by final status",
            metrics.jobs_finished.clone(),
        );
        worker.register(
            "duplicate_deliveries",
            "Messages for jobs another claim (or this process) holds, that wait for a retry, whose row another session locks, or that finished (acked, not run)",
            metrics.duplicate_deliveries.clone(),
        );
        worker.register(
            "dropped_messages",
            "Messages whose job or connection no longer exists (acked, not run)",
            metrics.dropped_messages.clone(),
        );
        worker.register(
            "dead_lettered",
            "Messages that cannot be parsed or have an unknown version",
            metrics.dead_lettered.clone(),
        );
        worker.register(
            "cancels_received",
            "Cancel messages from the control exchange for a job running here",
            metrics.cancels_received.clone(),
        );
        worker.register(
            "reaped",
            "Jobs the reaper moved on, by action (requeued, failed, cancelled)",
            metrics.reaped.clone(),
        );
        worker.register(
            "consumer_reconnects",
            "Times the consumer's channel closed or failed and the worker consumed anew (a broker restart, consumer_timeout, a lost connection)",
            metrics.consumer_reconnects.clone(),
        );
        worker.register(
            "reaper_passes",
            "Passes of this worker's reaper that ran to the end",
            metrics.reaper_passes.clone(),
        );
        worker.register(
            "fair_share_waits",
            "Jobs held back (they wait in Postgres for a slot) because their organization runs its share of jobs",
            metrics.fair_share_waits.clone(),
        );
        worker.register(
            "memory_budget_bytes",
            "The memory budget of this worker's batches (SYNCWAY_WORKER__MEMORY_BUDGET_BYTES)",
            metrics.memory_budget.clone(),
        );
        worker.register(
            "memory_reserved_bytes",
            "What the batches of this worker's jobs hold of the memory budget now",
            metrics.memory_reserved.clone(),
        );
        worker.register(
            "memory_waits",
            "Batches whose read waited for room in the memory budget",
            metrics.memory_waits.clone(),
        );
        metrics
    }
}
