//! Consumption of job messages with manual acknowledgement.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use crate::{QueueError, Topology};

/// A consumer of the jobs queue and of the manual-runs queue, on one
/// channel: each with at most the prefetch unacknowledged deliveries, the
/// manual runs taken first whenever both have one ready.
pub struct JobConsumer {
    channel: Channel,
    consumer: Consumer,
    manual: Consumer,
    tag: String,
}

impl std::fmt::Debug for JobConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobConsumer")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl JobConsumer {
    pub(crate) async fn open(
        connection: &Connection,
        topology: &Topology,
        prefetch: u16,
        tag: &str,
    ) -> Result<Self, QueueError> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let manual = channel
            .basic_consume(
                topology.manual_queue().into(),
                manual_tag(tag).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                topology.jobs_queue().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(JobConsumer {
            channel,
            consumer,
            manual,
            tag: tag.to_owned(),
        })
    }

    /// The next delivery, a manual run's first; `None` when the consumer
    /// was cancelled or the channel closed (reconnect), an error when the
    /// connection failed.
    pub async fn next(&mut self) -> Option<Result<JobDelivery, QueueError>> {
        let delivery = tokio::select! {
            biased;
            delivery = self.manual.next() => delivery?,
            delivery = self.consumer.next() => delivery?,
        };
        Some(delivery.map(JobDelivery).map_err(QueueError::from))
    }

    /// Closes the channel: unacknowledged deliveries go back to the queue.
    pub async fn close(&self) {
        let _ = self.channel.close(200, "worker stopping".into()).await;
    }

    /// Lets the broker keep up to `prefetch` deliveries unacknowledged on
    /// this consumer from now on.
    pub async fn set_prefetch(&self, prefetch: u16) -> Result<(), QueueError> {
        self.channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        Ok(())
    }

    /// Stops new deliveries; unacknowledged ones stay with this consumer
    /// until acked or until the channel closes (then they are redelivered).
    pub async fn cancel(&self) -> Result<(), QueueError> {
        self.channel
            .basic_cancel(
                manual_tag(&self.tag).as_str().into(),
                BasicCancelOptions::default(),
            )
            .await?;
        self.channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await?;
        Ok(())
    }
}

fn manual_tag(tag: &str) -> String {
    format!("{tag}.manual")
}

/// One delivered message; settle it with exactly one of its methods.
pub struct JobDelivery(Delivery);

impl std::fmt::Debug for JobDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDelivery")
            .field("tag", &self.0.delivery_tag)
            .field("redelivered", &self.0.redelivered)
            .finish()
    }
}

impl JobDelivery {
    pub fn body(&self) -> &[u8] {
        &self.0.data
    }

    pub fn redelivered(&self) -> bool {
        self.0.redelivered
    }

    /// Done with it: the broker forgets the message.
    pub async fn ack(&self) -> Result<(), QueueError> {
        self.0.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Cannot ever run: the broker moves it to the dead-letter queue.
    pub async fn dead_letter(&self) -> Result<(), QueueError> {
        self.0.reject(BasicRejectOptions { requeue: false }).await?;
        Ok(())
    }

    /// Not run here: the broker delivers it again (to any consumer).
    pub async fn requeue(&self) -> Result<(), QueueError> {
        self.0
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await?;
        Ok(())
    }
}

/// A consumer of control messages, on a queue of this process's own bound to
/// the control exchange. Control messages are acted on at once or not at
/// all (the worker checks for cancels at every batch anyway), so they are
/// consumed without acknowledgements.
pub struct ControlConsumer {
    channel: Channel,
    consumer: Consumer,
}

impl std::fmt::Debug for ControlConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConsumer").finish_non_exhaustive()
    }
}

impl ControlConsumer {
    pub(crate) async fn open(
        connection: &Connection,
        topology: &Topology,
    ) -> Result<Self, QueueError> {
        let channel = connection.create_channel().await?;
        // Server-named, exclusive: deleted when this connection closes.
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                topology.control_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(ControlConsumer { channel, consumer })
    }

    /// The next control message's body; `None` when the channel closed.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, QueueError>> {
        let delivery = self.consumer.next().await?;
        Some(
            delivery
                .map(|delivery| delivery.data)
                .map_err(QueueError::from),
        )
    }

    pub async fn close(&self) {
        let _ = self.channel.close(200, "worker stopping".into()).await;
    }
}
