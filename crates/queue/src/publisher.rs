//! Confirmed publishing of job and control messages.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use syncway_model::Route;

use crate::{QueueError, Topology};

/// The longest per-message TTL RabbitMQ accepts (2^32 - 1 ms, about 49
/// days); a longer `expiration` makes the broker close the channel.
pub const MAX_EXPIRATION_MS: u64 = u32::MAX as u64;

/// A channel in publisher-confirm mode.
pub struct Publisher {
    channel: Channel,
    topology: Topology,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub(crate) async fn open(
        connection: &Connection,
        topology: Topology,
    ) -> Result<Self, QueueError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel, topology })
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Closes the channel (the connection stays).
    pub async fn close(&self) {
        let _ = self.channel.close(200, "closing".into()).await;
    }

    /// Publishes job messages to the jobs queue; see [`Self::publish`].
    pub async fn publish_jobs(&self, payloads: &[&[u8]]) -> Result<(), QueueError> {
        let messages: Vec<(&[u8], Route)> = payloads
            .iter()
            .map(|payload| (*payload, Route::Jobs { delay_ms: 0 }))
            .collect();
        self.publish(&messages).await
    }

    /// Publishes messages (persistent) and waits until the broker has
    /// confirmed every one: when this returns `Ok`, each message is stored in
    /// its queue. Any nack, or a job message that no queue took, is an error,
    /// and the caller must publish the whole batch again (consumers tolerate
    /// the duplicates this may cause). A control message that no worker is
    /// there to receive is not an error: nobody runs the job it names.
    pub async fn publish(&self, messages: &[(&[u8], Route)]) -> Result<(), QueueError> {
        let persistent = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        let mut confirms = Vec::with_capacity(messages.len());
        for (payload, route) in messages {
            let (exchange, routing_key, properties) = match route {
                Route::Jobs { delay_ms: 0 } => (
                    String::new(),
                    self.topology.jobs_queue(),
                    persistent.clone(),
                ),
                Route::Jobs { delay_ms } => (
                    String::new(),
                    self.topology.retry_queue(*delay_ms),
                    persistent
                        .clone()
                        .with_expiration((*delay_ms).min(MAX_EXPIRATION_MS).to_string().into()),
                ),
                Route::Manual => (
                    String::new(),
                    self.topology.manual_queue(),
                    persistent.clone(),
                ),
                Route::Control => (
                    self.topology.control_exchange(),
                    String::new(),
                    persistent.clone(),
                ),
            };
            let confirm = self
                .channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: !matches!(route, Route::Control),
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    properties,
                )
                .await?;
            confirms.push((confirm, routing_key));
        }
        for (confirm, routing_key) in confirms {
            match confirm.await? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => return Err(QueueError::Unroutable(routing_key)),
                Confirmation::Nack(_) | Confirmation::NotRequested => {
                    return Err(QueueError::Nacked);
                }
            }
        }
        Ok(())
    }
}
