//! Connection and topology.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use crate::{ControlConsumer, DELIVERY_LIMIT, JobConsumer, Publisher};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) a message")]
    Nacked,
    #[error("the broker could not route a message to {0}")]
    Unroutable(String),
    #[error("no broker URL is configured")]
    NoBroker,
}

/// The URLs of a comma-separated list, in order, blanks skipped.
pub fn broker_urls(urls: &str) -> impl Iterator<Item = &str> {
    urls.split(',').map(str::trim).filter(|url| !url.is_empty())
}

/// `urls` (one or a comma-separated list) asking the broker for an AMQP
/// heartbeat every `seconds`, where a URL does not name one itself: a
/// connection whose peer stopped answering (cut off, frozen) is closed by
/// both ends after about two missed heartbeats, and the broker gives its
/// unacknowledged deliveries to other consumers, instead of after its
/// default of a minute or more.
pub fn with_heartbeat(urls: &str, seconds: u16) -> String {
    broker_urls(urls)
        .map(|url| {
            if url.contains("heartbeat=") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&heartbeat={seconds}")
            } else {
                format!("{url}?heartbeat={seconds}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl QueueError {
    /// The broker refused this message (nack, or no queue took it) while
    /// the connection stays up: publishing it again will not help.
    pub fn is_refusal(&self) -> bool {
        matches!(self, QueueError::Nacked | QueueError::Unroutable(_))
    }
}

/// The names of every exchange and queue of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    pub fn new(namespace: &str) -> Self {
        Topology {
            namespace: namespace.to_owned(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn jobs_queue(&self) -> String {
        format!("{}.sync_jobs", self.namespace)
    }

    /// Jobs triggered through the API (manual runs): workers take from it
    /// before the jobs queue, so that a manual run does not wait behind a
    /// scheduled backlog.
    pub fn manual_queue(&self) -> String {
        format!("{}.sync_jobs.manual", self.namespace)
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.sync_jobs.dead", self.namespace)
    }

    /// The fanout exchange of control messages (cancel): every worker binds
    /// a queue of its own to it.
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.namespace)
    }

    /// The delay queue a retry of `delay_ms` waits in. Messages expire after
    /// their own delay (per-message TTL) and are dead-lettered back to the
    /// jobs queue. A queue only expires the message at its head, so delays
    /// are bucketed by powers of two: within one queue they differ by at
    /// most 2x, which bounds how long a short delay can wait behind a long
    /// one.
    pub fn retry_queue(&self, delay_ms: u64) -> String {
        self.retry_queue_at(retry_level(delay_ms))
    }

    fn retry_queue_at(&self, level: u32) -> String {
        format!("{}.sync_jobs.delay.{level}", self.namespace)
    }

    fn retry_queues(&self) -> impl Iterator<Item = String> + '_ {
        (0..RETRY_LEVELS).map(|level| self.retry_queue_at(level))
    }

    /// Every delay queue, shortest delays first.
    pub fn delay_queues(&self) -> Vec<String> {
        self.retry_queues().collect()
    }

    /// The classic delay queues of earlier syncway versions (`.retry.<k>`):
    /// declared no more (a classic queue lives on one node, and while that
    /// node is down no client can declare the topology), still deleted with
    /// the namespace. Messages left in them dead-letter to the jobs queue as
    /// before.
    fn legacy_retry_queues(&self) -> impl Iterator<Item = String> + '_ {
        (0..RETRY_LEVELS).map(|level| format!("{}.sync_jobs.retry.{level}", self.namespace))
    }
}

/// Delay buckets: level k holds delays up to 2^k seconds; the last one
/// everything longer.
const RETRY_LEVELS: u32 = 10;

fn retry_level(delay_ms: u64) -> u32 {
    let seconds = delay_ms.div_ceil(1000).max(1);
    // ceil(log2(seconds))
    let level = u64::BITS - (seconds - 1).leading_zeros();
    level.min(RETRY_LEVELS - 1)
}

/// A connection to RabbitMQ with the topology declared.
pub struct Broker {
    pub(crate) connection: Connection,
    pub(crate) topology: Topology,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects and declares the topology (idempotent).
    /// Connects and declares the topology. `urls` is one AMQP URL or a
    /// comma-separated list of the brokers of one cluster, tried in turn
    /// until one answers (so a process follows the cluster when a node
    /// goes, without a load balancer); the last failure is returned when
    /// none does.
    pub async fn connect(urls: &str, namespace: &str, name: &str) -> Result<Self, QueueError> {
        let mut last = None;
        for url in broker_urls(urls) {
            match Self::connect_one(url, namespace, name).await {
                Ok(broker) => return Ok(broker),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(QueueError::NoBroker))
    }

    async fn connect_one(url: &str, namespace: &str, name: &str) -> Result<Self, QueueError> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(url, properties).await?;
        let broker = Broker {
            connection,
            topology: Topology::new(namespace),
        };
        broker.declare().await?;
        Ok(broker)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// False once the connection failed or was closed: make a new one.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    async fn declare(&self) -> Result<(), QueueError> {
        let channel = self.connection.create_channel().await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        // Dead letters, and control messages to every worker.
        for exchange in [
            self.topology.dead_exchange(),
            self.topology.control_exchange(),
        ] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(self.topology.dead_queue().into(), durable, quorum.clone())
            .await?;
        channel
            .queue_bind(
                self.topology.dead_queue().into(),
                self.topology.dead_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut jobs = quorum;
        jobs.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.topology.dead_exchange().into()),
        );
        jobs.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        channel
            .queue_declare(self.topology.manual_queue().into(), durable, jobs.clone())
            .await?;
        channel
            .queue_declare(self.topology.jobs_queue().into(), durable, jobs)
            .await?;
        // Delay queues: quorum queues like the jobs queue, so that the
        // topology stays declarable and nothing waiting is lost while any
        // one node of a cluster is down. Messages expire after their own
        // delay (per-message TTL) and are dead-lettered, at least once, back
        // to the jobs queue through the default exchange (at-least-once
        // dead-lettering needs reject-publish overflow).
        let mut delay = FieldTable::default();
        delay.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        delay.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        delay.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.topology.jobs_queue().into()),
        );
        delay.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        delay.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        for queue in self.topology.retry_queues() {
            channel
                .queue_declare(queue.as_str().into(), durable, delay.clone())
                .await?;
        }
        channel.close(200, "declared".into()).await?;
        Ok(())
    }

    /// A channel in confirm mode for publishing job messages.
    pub async fn publisher(&self) -> Result<Publisher, QueueError> {
        Publisher::open(&self.connection, self.topology.clone()).await
    }

    /// Consumes the jobs queue with at most `prefetch` unacknowledged deliveries.
    pub async fn consume(&self, prefetch: u16, tag: &str) -> Result<JobConsumer, QueueError> {
        JobConsumer::open(&self.connection, &self.topology, prefetch, tag).await
    }

    /// Messages ready in a queue of this namespace (`None`: no such queue).
    pub async fn queue_depth(&self, queue: &str) -> Result<Option<u32>, QueueError> {
        Ok(self.queue_stats(queue).await?.map(|stats| stats.ready))
    }

    /// Consumes control messages: a queue of this process's own (exclusive,
    /// deleted with the connection) bound to the control exchange.
    pub async fn control(&self) -> Result<ControlConsumer, QueueError> {
        ControlConsumer::open(&self.connection, &self.topology).await
    }

    /// Drops every message ready in a queue of this namespace (tests use it
    /// to lose messages on purpose). Returns how many were dropped.
    pub async fn purge(&self, queue: &str) -> Result<u32, QueueError> {
        let channel = self.connection.create_channel().await?;
        let purged = channel
            .queue_purge(queue.into(), QueuePurgeOptions::default())
            .await?;
        let _ = channel.close(200, "purged".into()).await;
        Ok(purged)
    }

    pub async fn close(&self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Deletes every queue and exchange of `namespace` (tests, benchmarks,
/// teardown), connecting without declaring anything. Each deletion uses its
/// own channel, so one failure does not stop the others; deleting what does
/// not exist succeeds. Returns the failures, if any.
pub async fn delete_namespace(url: &str, namespace: &str) -> Result<(), Vec<QueueError>> {
    let topology = Topology::new(namespace);
    let mut connected = None;
    let mut failures = Vec::new();
    for url in broker_urls(url) {
        let properties =
            ConnectionProperties::default().with_connection_name("syncway-cleanup".into());
        match Connection::connect(url, properties).await {
            Ok(connection) => {
                connected = Some(connection);
                break;
            }
            Err(error) => failures.push(error.into()),
        }
    }
    let Some(connection) = connected else {
        return Err(failures);
    };
    let mut failures = Vec::new();
    let queues = [
        topology.jobs_queue(),
        topology.manual_queue(),
        topology.dead_queue(),
    ]
    .into_iter()
    .chain(topology.retry_queues())
    .chain(topology.legacy_retry_queues());
    for queue in queues {
        let deleted = async {
            let channel = connection.create_channel().await?;
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
            channel.close(200, "deleted".into()).await
        }
        .await;
        if let Err(error) = deleted {
            failures.push(error.into());
        }
    }
    for exchange in [topology.dead_exchange(), topology.control_exchange()] {
        let deleted = async {
            let channel = connection.create_channel().await?;
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
            channel.close(200, "deleted".into()).await
        }
        .await;
        if let Err(error) = deleted {
            failures.push(error.into());
        }
    }
    let _ = connection.close(200, "bye".into()).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::{retry_level, with_heartbeat};

    #[test]
    fn a_heartbeat_is_asked_for_where_a_url_names_none() {
        assert_eq!(
            with_heartbeat(
                "amqp://g:g@a:5672/%2f, amqp://g:g@b:5672/%2f?frame_max=8192",
                10
            ),
            "amqp://g:g@a:5672/%2f?heartbeat=10,amqp://g:g@b:5672/%2f?frame_max=8192&heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://g:g@a:5672/%2f?heartbeat=30", 10),
            "amqp://g:g@a:5672/%2f?heartbeat=30"
        );
    }

    #[test]
    fn retry_delays_are_bucketed_by_powers_of_two_seconds() {
        assert_eq!(retry_level(0), 0);
        assert_eq!(retry_level(1000), 0);
        assert_eq!(retry_level(1001), 1);
        assert_eq!(retry_level(2000), 1);
        assert_eq!(retry_level(5000), 3);
        assert_eq!(retry_level(300_000), 9);
        assert_eq!(retry_level(u64::MAX), 9);
    }
}
