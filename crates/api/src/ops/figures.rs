//! The deployment's figures (CONTRACT.md §6): queues from the broker (ready
//! and consumers by passive declare, unacked from the management API), jobs,
//! outbox and per-organization running jobs from Postgres.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use syncway_queue::{Broker, Topology};
use syncway_store::ops;

/// How many organizations get a series of their own in
/// `syncway_running_jobs`; the rest are summed as `other`.
pub const TOP_ORGANIZATIONS: i64 = 10;

/// One queue's figures; `None` where the source did not answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueFigures {
    pub name: String,
    pub ready: Option<u64>,
    pub unacked: Option<u64>,
    pub consumers: Option<u64>,
}

/// Everything the snapshot holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OpsFigures {
    /// The jobs queue, the dead letters, then the delay queues.
    pub queues: Vec<QueueFigures>,
    pub outbox_pending: i64,
    pub jobs: BTreeMap<String, i64>,
    pub oldest_pending_age_seconds: Option<f64>,
    /// (organization id, or `other`; running jobs).
    pub running_by_organization: Vec<(String, i64)>,
}

impl OpsFigures {
    pub fn jobs_queue(&self) -> Option<&QueueFigures> {
        self.queues.first()
    }

    pub fn dead_letters(&self) -> Option<&QueueFigures> {
        self.queues.get(1)
    }

    /// The manual-runs queue (jobs triggered through the API).
    pub fn manual_queue(&self) -> Option<&QueueFigures> {
        self.queues.get(2)
    }

    /// Messages waiting in the delay queues (retries).
    pub fn retry_ready(&self) -> u64 {
        self.queues.iter().skip(3).filter_map(|q| q.ready).sum()
    }
}

/// Where the broker figures come from.
pub struct BrokerSources<'a> {
    pub broker: Option<&'a Broker>,
    pub http: &'a reqwest::Client,
    pub management_url: Option<&'a str>,
    pub vhost: &'a str,
    pub topology: &'a Topology,
}

/// Gathers the figures (a few queries and one call per queue).
pub async fn collect(
    client: &impl syncway_store::GenericClient,
    sources: &BrokerSources<'_>,
) -> Result<OpsFigures, syncway_store::StoreError> {
    let db = ops::db_figures(client, TOP_ORGANIZATIONS).await?;
    let mut names = vec![
        sources.topology.jobs_queue(),
        sources.topology.dead_queue(),
        sources.topology.manual_queue(),
    ];
    names.extend(sources.topology.delay_queues());
    let mut queues = Vec::with_capacity(names.len());
    for (n, name) in names.into_iter().enumerate() {
        let stats = match sources.broker {
            Some(broker) => broker.queue_stats(&name).await.ok().flatten(),
            None => None,
        };
        // Delay queues have no consumers, so nothing unacked: the
        // management API is asked about the jobs, dead-letter and manual
        // queues.
        let unacked = match sources.management_url {
            Some(base) if n < 3 => {
                super::management::unacked(sources.http, base, sources.vhost, &name).await
            }
            _ => None,
        };
        queues.push(QueueFigures {
            ready: stats.map(|s| u64::from(s.ready)),
            consumers: stats.map(|s| u64::from(s.consumers)),
            unacked,
            name,
        });
    }
    Ok(OpsFigures {
        queues,
        outbox_pending: db.outbox_pending,
        jobs: db.jobs_by_status.into_iter().collect(),
        oldest_pending_age_seconds: db.oldest_pending_age_seconds,
        running_by_organization: db
            .running_by_organization
            .into_iter()
            .map(|(org, n)| (org.map_or_else(|| "other".to_owned(), |o| o.to_string()), n))
            .collect(),
    })
}
