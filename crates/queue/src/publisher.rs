//! Confirmed publishing of job messages.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use crate::{QueueError, Topology};

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

    /// Publishes job messages (persistent, mandatory) and waits until the
    /// broker has confirmed every one: when this returns `Ok`, each message is
    /// stored in the queue. Any nack or unroutable message is an error, and
    /// the caller must publish the whole batch again (consumers tolerate the
    /// duplicates this may cause).
    pub async fn publish_jobs(&self, payloads: &[&[u8]]) -> Result<(), QueueError> {
        let queue = self.topology.jobs_queue();
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        let mut confirms = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    properties.clone(),
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => return Err(QueueError::Unroutable(queue)),
                Confirmation::Nack(_) | Confirmation::NotRequested => {
                    return Err(QueueError::Nacked);
                }
            }
        }
        Ok(())
    }
}
