//! What operators ask the broker: a queue's figures, the dead letters (with
//! why each was dead-lettered), and moving them back to the jobs queue.

use chrono::{DateTime, Utc};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};

use crate::{Broker, QueueError};

/// A queue's figures from a passive declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub ready: u32,
    pub consumers: u32,
}

/// A dead-lettered message as an operator sees it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message as it was published (lossy UTF-8).
    pub body: String,
    /// Why the broker dead-lettered it (`rejected`: a worker could not run
    /// it; `delivery_limit`: redelivered too often; `expired`), with the
    /// queue it came from.
    pub reason: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl Broker {
    /// Ready messages and consumers of a queue (`None`: no such queue).
    pub async fn queue_stats(&self, queue: &str) -> Result<Option<QueueStats>, QueueError> {
        let channel = self.connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        // A passive declare of a missing queue closes the channel with 404.
        let stats = match channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(queue) => Some(QueueStats {
                ready: queue.message_count(),
                consumers: queue.consumer_count(),
            }),
            Err(_) => None,
        };
        let _ = channel.close(200, "stats".into()).await;
        Ok(stats)
    }

    /// Up to `limit` dead letters, oldest first, left in their queue: they
    /// are taken unacked and put back when the channel closes.
    pub async fn peek_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let channel = self.connection.create_channel().await?;
        let queue = self.topology.dead_queue();
        let mut letters = Vec::new();
        while letters.len() < limit {
            let Some(message) = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let (reason, at) = death(message.delivery.properties.headers().as_ref());
            letters.push(DeadLetter {
                body: String::from_utf8_lossy(&message.delivery.data).into_owned(),
                reason,
                dead_lettered_at: at,
            });
        }
        // Unacked messages go back to the queue, in their order.
        let _ = channel.close(200, "peeked".into()).await;
        Ok(letters)
    }

    /// Moves the dead letters there are now back to the jobs queue, each
    /// acked only once the broker confirmed its copy: a crash in between
    /// leaves a duplicate (harmless: a claim runs a job once), never a loss.
    /// A message that still cannot run comes back to the dead letters.
    pub async fn redrive_dead_letters(&self) -> Result<u64, QueueError> {
        let dead = self.topology.dead_queue();
        let jobs = self.topology.jobs_queue();
        let total = self
            .queue_stats(&dead)
            .await?
            .map_or(0, |stats| stats.ready);
        let channel = self.connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut moved = 0;
        // Only the ones there at the start: one that fails again at once
        // would otherwise come round for ever.
        while moved < u64::from(total) {
            let Some(message) = channel
                .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            let confirm = channel
                .basic_publish(
                    "".into(),
                    jobs.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.delivery.data,
                    properties,
                )
                .await?
                .await?;
            match confirm {
                Confirmation::Ack(None) | Confirmation::NotRequested => {
                    message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await?;
                    moved += 1;
                }
                // Not taken: the dead letter goes back where it was.
                refused => {
                    message
                        .delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await?;
                    return Err(match refused {
                        Confirmation::Nack(_) => QueueError::Nacked,
                        _ => QueueError::Unroutable(jobs),
                    });
                }
            }
        }
        let _ = channel.close(200, "redriven".into()).await;
        Ok(moved)
    }
}

/// The first `x-death` entry's reason, queue and time.
fn death(headers: Option<&FieldTable>) -> (String, Option<DateTime<Utc>>) {
    let entry = headers
        .and_then(|headers| headers.inner().get("x-death"))
        .and_then(|deaths| match deaths {
            AMQPValue::FieldArray(deaths) => deaths.as_slice().first().cloned(),
            _ => None,
        });
    let Some(AMQPValue::FieldTable(entry)) = entry else {
        return ("unknown (no x-death header)".into(), None);
    };
    let text = |key: &str| match entry.inner().get(key) {
        Some(AMQPValue::LongString(text)) => Some(text.to_string()),
        Some(AMQPValue::ShortString(text)) => Some(text.to_string()),
        _ => None,
    };
    let reason = match (text("reason"), text("queue")) {
        (Some(reason), Some(queue)) => format!("{reason} (from {queue})"),
        (Some(reason), None) => reason,
        _ => "unknown".into(),
    };
    let at = match entry.inner().get("time") {
        Some(AMQPValue::Timestamp(seconds)) => {
            DateTime::from_timestamp(i64::try_from(*seconds).unwrap_or(0), 0)
        }
        _ => None,
    };
    (reason, at)
}
