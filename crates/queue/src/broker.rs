//! Connection and topology.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use crate::{DELIVERY_LIMIT, JobConsumer, Publisher};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) a message")]
    Nacked,
    #[error("the broker could not route a message to {0}")]
    Unroutable(String),
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

    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.sync_jobs.dead", self.namespace)
    }
}

/// A connection to RabbitMQ with the topology declared.
pub struct Broker {
    connection: Connection,
    topology: Topology,
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
    pub async fn connect(url: &str, namespace: &str, name: &str) -> Result<Self, QueueError> {
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
        channel
            .exchange_declare(
                self.topology.dead_exchange().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
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
            .queue_declare(self.topology.jobs_queue().into(), durable, jobs)
            .await?;
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
        let channel = self.connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        // A passive declare of a missing queue closes the channel with 404.
        let depth = match channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(queue) => Some(queue.message_count()),
            Err(_) => None,
        };
        let _ = channel.close(200, "depth".into()).await;
        Ok(depth)
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
    let properties = ConnectionProperties::default().with_connection_name("syncway-cleanup".into());
    let connection = Connection::connect(url, properties)
        .await
        .map_err(|error| vec![error.into()])?;
    let mut failures = Vec::new();
    for queue in [topology.jobs_queue(), topology.dead_queue()] {
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
    let deleted = async {
        let channel = connection.create_channel().await?;
        channel
            .exchange_delete(
                topology.dead_exchange().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
        channel.close(200, "deleted".into()).await
    }
    .await;
    if let Err(error) = deleted {
        failures.push(error.into());
    }
    let _ = connection.close(200, "bye".into()).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}
