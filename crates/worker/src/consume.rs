//! The consume loop: connect, take a job slot, then a delivery, and hand it
//! to a task that holds the slot until the delivery is settled; reconnect
//! with backoff when the broker goes away (the new channel's prefetch is the
//! slots the running jobs left, see [`crate::slots`]); on shutdown stop
//! consuming and give running jobs their grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use syncway_queue::Broker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Context;
use crate::slots::{Slot, Slots};
use crate::{delivery, running};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Options {
    pub amqp_url: String,
    pub namespace: String,
    pub concurrency: u16,
    pub grace: Duration,
}

pub async fn run(context: Arc<Context>, options: Options, ready: Arc<AtomicBool>) {
    let tasks = TaskTracker::new();
    let handback = CancellationToken::new();
    let stopping = context.stopping.clone();
    let slots = Slots::new(options.concurrency);
    let mut backoff = MIN_BACKOFF;
    let mut broker_for_shutdown = None;
    'connections: while !stopping.is_cancelled() {
        // A new channel brings no more than the slots the jobs still
        // running from earlier channels left: at least one.
        let mut prefetch = slots.new_channel();
        while prefetch == 0 {
            tokio::select! {
                () = slots.earlier_ended() => prefetch = slots.prefetch(),
                () = stopping.cancelled() => break 'connections,
            }
        }
        let connected = tokio::select! {
            connected = Broker::connect(&options.amqp_url, &options.namespace, &context.worker_id) => connected,
            () = stopping.cancelled() => break,
        };
        let consumer = match connected {
            Ok(broker) => match broker.consume(prefetch, &context.worker_id).await {
                Ok(consumer) => Some((broker, consumer)),
                Err(error) => {
                    tracing::warn!(%error, "cannot consume the jobs queue");
                    broker.close().await;
                    None
                }
            },
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "worker cannot reach the broker");
                None
            }
        };
        let Some((broker, mut consumer)) = consumer else {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stopping.cancelled() => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        let control = match broker.control().await {
            Ok(control) => Some(Control::listen(context.clone(), control)),
            Err(error) => {
                // Cancels still arrive, at the next batch or heartbeat.
                tracing::warn!(%error, "cannot consume control messages");
                None
            }
        };
        tracing::info!(namespace = %options.namespace, prefetch, "consuming jobs");
        ready.store(true, Ordering::Relaxed);
        backoff = MIN_BACKOFF;
        // The slot the next delivery runs in: taken before the delivery.
        let mut slot: Option<Slot> = None;
        loop {
            tokio::select! {
                () = stopping.cancelled() => {
                    if let Err(error) = consumer.cancel().await {
                        tracing::warn!(%error, "could not cancel the consumer");
                    }
                    break;
                }
                () = slots.earlier_ended() => {
                    let room = slots.prefetch();
                    if room > prefetch {
                        match consumer.set_prefetch(room).await {
                            Ok(()) => prefetch = room,
                            Err(error) => tracing::warn!(%error, "could not raise the prefetch"),
                        }
                    }
                }
                taken = slots.take(), if slot.is_none() => slot = Some(taken),
                delivery = consumer.next(), if slot.is_some() => match delivery {
                    Some(Ok(delivery)) => {
                        let slot = slot.take();
                        let handled = delivery::handle(context.clone(), delivery, handback.clone());
                        tasks.spawn(async move {
                            handled.await;
                            // Free once the delivery is settled.
                            drop(slot);
                        });
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "lost the broker; reconnecting");
                        context.metrics.consumer_reconnects.inc();
                        break;
                    }
                    None => {
                        tracing::warn!("the broker closed the consumer; reconnecting");
                        context.metrics.consumer_reconnects.inc();
                        break;
                    }
                },
            }
        }
        ready.store(false, Ordering::Relaxed);
        if stopping.is_cancelled() {
            // Keep the connection open while jobs finish, so their acks land
            // and cancels still reach them.
            broker_for_shutdown = Some((broker, consumer, control));
            break;
        }
        if let Some(control) = control {
            control.close().await;
        }
        consumer.close().await;
        broker.close().await;
    }

    tasks.close();
    if !tasks.is_empty() {
        tracing::info!(running = tasks.len(), grace = ?options.grace, "waiting for running jobs");
    }
    if tokio::time::timeout(options.grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = tasks.len(),
            "grace period over; handing running jobs back"
        );
        handback.cancel();
        tasks.wait().await;
    }
    if let Some((broker, consumer, control)) = broker_for_shutdown {
        if let Some(control) = control {
            control.close().await;
        }
        consumer.close().await;
        broker.close().await;
    }
    tracing::info!("worker stopped");
}

/// The control listener of one connection. Its channel is closed before
/// the connection: a channel dropped while its connection closes makes
/// lapin log a connection error.
struct Control {
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Control {
    fn listen(context: Arc<Context>, consumer: syncway_queue::ControlConsumer) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(running::listen_for_cancels(context, consumer, stop.clone()));
        Control { task, stop }
    }

    /// Stops the listener and waits until its channel is closed.
    async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
