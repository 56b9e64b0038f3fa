//! The outbox relay: publishes committed job messages to RabbitMQ. Every API
//! and every worker process runs one, so that messages flow while any
//! process runs: triggers (API), and retries, held jobs let go, reaper
//! re-enqueues and scheduled runs (workers) alike.
//!
//! Woken at once by a write in this process (in-process signal), and every
//! [`POLL_INTERVAL`] otherwise, to pick up rows committed by other
//! processes, or by processes that died before publishing them. Rows are taken (deleted) in a transaction with
//! `FOR UPDATE SKIP LOCKED` (relays in several processes share the work),
//! published with publisher confirms, and the transaction commits only after
//! every confirm.
//! If the broker or Postgres fails midway, the transaction rolls back and the
//! rows are published again later: a message may be published twice (the
//! worker's guarded claim makes that harmless), never lost.
//!
//! A row holds one message, or the batch of messages one statement that
//! made jobs wrote (V23); the relay publishes every message of the rows it
//! took, and deletes the rows together.
//!
//! A message the broker refuses while the connection stays up (a nack, or
//! no queue to take it) would otherwise be retried at the head of the
//! outbox forever, holding up every tenant's jobs behind it. When a batch
//! meets a refusal, its rows are published one by one; a row refused on its
//! own is set aside: taken out of the outbox, logged, counted
//! (`outbox_refused`, per message), and its jobs failed with the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use syncway_model::Route;
use syncway_queue::{Broker, Publisher, QueueError};
use syncway_store::{Pool, StoreError, jobs, outbox};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The relay's metrics, registered by its process under its own prefix
/// (`syncway_api_outbox_published_total`, `syncway_worker_...`).
#[derive(Clone, Default)]
pub struct RelayMetrics {
    pub outbox_published: Counter,
    pub relay_errors: Counter,
    pub outbox_refused: Counter,
    pub outbox_backlog: Gauge,
}

impl std::fmt::Debug for RelayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayMetrics").finish_non_exhaustive()
    }
}

impl RelayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RelayMetrics::default();
        registry.register(
            "outbox_published",
            "Job messages published to RabbitMQ and confirmed",
            metrics.outbox_published.clone(),
        );
        registry.register(
            "relay_errors",
            "Outbox relay failures (broker or database); each is retried",
            metrics.relay_errors.clone(),
        );
        registry.register(
            "outbox_refused",
            "Messages the broker refused, set aside (their jobs failed) so that others flow",
            metrics.outbox_refused.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Job messages committed but not yet published (sampled)",
            metrics.outbox_backlog.clone(),
        );
        metrics
    }
}

/// Outbox rows published per transaction (a row may carry a batch).
const BATCH: i64 = 256;
/// Fallback poll for rows this process was not told about.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Relay {
    pub pool: Pool,
    pub amqp_url: String,
    pub namespace: String,
    pub wake: Arc<Notify>,
    pub ready: Arc<AtomicBool>,
    pub metrics: RelayMetrics,
    /// The connection's name at the broker (who publishes).
    pub name: String,
}

/// How a drain of the outbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// Everything committed was published (or set aside).
    All,
    /// The broker nacked a message: it is held, and the channel replaced.
    Nacked,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Broker(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Relay {
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let broker = match Broker::connect(&self.amqp_url, &self.namespace, &self.name).await {
                Ok(broker) => broker,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "relay cannot reach the broker");
                    self.metrics.relay_errors.inc();
                    if pause(&stop, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let mut publisher = match broker.publisher().await {
                Ok(publisher) => publisher,
                Err(error) => {
                    tracing::warn!(%error, "relay cannot open a publishing channel");
                    broker.close().await;
                    if pause(&stop, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::info!(namespace = %self.namespace, "relay connected to the broker");
            self.ready.store(true, Ordering::Relaxed);
            backoff = MIN_BACKOFF;
            let stopped = self
                .publish_until_broken(&broker, &mut publisher, &stop, &mut backoff)
                .await;
            self.ready.store(false, Ordering::Relaxed);
            // The channel first: a channel dropped while its connection
            // closes makes lapin log a connection error.
            publisher.close().await;
            broker.close().await;
            if stopped {
                return;
            }
        }
    }

    /// Publishes until the broker connection breaks (false) or `stop` (true).
    async fn publish_until_broken(
        &self,
        broker: &Broker,
        publisher: &mut Publisher,
        stop: &CancellationToken,
        backoff: &mut Duration,
    ) -> bool {
        let mut ticks = 0u32;
        loop {
            match self.drain(publisher).await {
                Ok(Drained::All) => *backoff = MIN_BACKOFF,
                Ok(Drained::Nacked) => {
                    // A quorum queue that rejected a publish keeps rejecting
                    // the same channel's publishes (RabbitMQ 3.10): the held
                    // messages are tried again on a fresh one.
                    publisher.close().await;
                    *publisher = match broker.publisher().await {
                        Ok(publisher) => publisher,
                        Err(error) => {
                            tracing::warn!(%error, "relay cannot open a publishing channel");
                            return false;
                        }
                    };
                }
                Err(RelayError::Broker(error)) => {
                    tracing::warn!(%error, "relay lost the broker; messages stay in the outbox");
                    self.metrics.relay_errors.inc();
                    return pause(stop, backoff).await;
                }
                Err(RelayError::Store(error)) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "relay cannot read the outbox");
                    self.metrics.relay_errors.inc();
                    if pause(stop, backoff).await {
                        return true;
                    }
                    continue;
                }
            }
            if stop.is_cancelled() {
                return true;
            }
            if !publisher.is_open() {
                return false;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {
                    ticks = ticks.wrapping_add(1);
                    // Sample the backlog every few seconds when idle.
                    if ticks.is_multiple_of(10) {
                        self.sample_backlog().await;
                    }
                }
                // One last drain after stop: publish what the drained
                // requests committed.
                () = stop.cancelled() => {}
            }
        }
    }

    /// Publishes every committed message, batch by batch, except those the
    /// broker nacks (held: [`Drained::Nacked`]).
    async fn drain(&self, publisher: &Publisher) -> Result<Drained, RelayError> {
        loop {
            let mut client = self.pool.get().await.map_err(StoreError::from)?;
            let transaction = client.transaction().await.map_err(StoreError::from)?;
            let batch = outbox::take_oldest(&transaction, BATCH).await?;
            if batch.is_empty() {
                return Ok(Drained::All);
            }
            let messages = messages_of(&batch);
            // On any error the transaction is dropped: rolled back, the rows
            // are back in the outbox.
            match publisher.publish(&messages).await {
                Ok(()) => {}
                Err(error) if error.is_refusal() => {
                    drop(transaction);
                    tracing::warn!(%error, "the broker refused a message; publishing the batch row by row");
                    if self.row_by_row(publisher, &batch).await? {
                        // The channel rejects from now on: stop here.
                        return Ok(Drained::Nacked);
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            transaction.commit().await.map_err(StoreError::from)?;
            self.metrics.outbox_published.inc_by(messages.len() as u64);
            tracing::debug!(published = messages.len(), "relay published job messages");
            if (batch.len() as i64) < BATCH {
                return Ok(Drained::All);
            }
        }
    }

    /// Publishes `batch`'s rows each in a transaction of its own, holding
    /// the ones the broker nacks and setting aside the ones it refuses for
    /// good. A row's messages all go the same way (V23), so the broker takes
    /// or refuses them alike: a row is held or set aside as a whole. True
    /// when one was held (the rest of the batch is left for a fresh
    /// channel).
    async fn row_by_row(
        &self,
        publisher: &Publisher,
        batch: &[outbox::OutboxRow],
    ) -> Result<bool, RelayError> {
        for row in batch {
            let mut client = self.pool.get().await.map_err(StoreError::from)?;
            let transaction = client.transaction().await.map_err(StoreError::from)?;
            // Another relay may have published it meanwhile.
            let Some(row) = outbox::take(&transaction, row.id).await? else {
                continue;
            };
            let job_ids: Vec<_> = row.messages.iter().map(|(job_id, _)| *job_id).collect();
            match publisher
                .publish(&messages_of(std::slice::from_ref(&row)))
                .await
            {
                Ok(()) => {
                    self.metrics.outbox_published.inc_by(job_ids.len() as u64);
                }
                Err(error) if error.is_refusal() && !refused_for_good(&error, &row) => {
                    // A nack passes (a quorum queue electing a leader):
                    // keep the row, try it again shortly. Those of its
                    // messages the broker took are published again then
                    // (a duplicate is harmless: the claim runs a job once).
                    drop(transaction);
                    tracing::warn!(?job_ids, route = ?row.route, %error, hold = ?REFUSAL_HOLD, "the broker refused a message; holding it and trying again");
                    self.metrics.relay_errors.inc();
                    outbox::hold(&client, row.id, REFUSAL_HOLD).await?;
                    return Ok(true);
                }
                Err(error) if error.is_refusal() => {
                    let reason = format!("the broker refused the job's message: {error}");
                    tracing::error!(?job_ids, route = ?row.route, %error, "setting aside messages the broker refused");
                    self.metrics.outbox_refused.inc_by(job_ids.len() as u64);
                    if matches!(row.route, Route::Jobs { .. } | Route::Manual) {
                        jobs::fail_unpublishable(&transaction, &job_ids, &reason).await?;
                    }
                }
                Err(error) => return Err(error.into()),
            }
            transaction.commit().await.map_err(StoreError::from)?;
        }
        Ok(false)
    }

    async fn sample_backlog(&self) {
        if let Ok(client) = self.pool.get().await
            && let Ok(depth) = outbox::depth(&client).await
        {
            self.metrics.outbox_backlog.set(depth);
        }
    }
}

/// How long a nacked message waits before it is tried again.
const REFUSAL_HOLD: Duration = Duration::from_secs(1);
/// How long the broker may go on nacking a message before it is set aside.
const REFUSAL_GRACE: Duration = Duration::from_secs(60);

/// Whether a refused message is set aside now: a message no queue takes
/// (unroutable) at once; a nacked one once the broker has refused it for
/// [`REFUSAL_GRACE`].
fn refused_for_good(error: &QueueError, row: &outbox::OutboxRow) -> bool {
    match error {
        QueueError::Nacked => row.refused_since.is_some_and(|since| {
            (chrono::Utc::now() - since).to_std().unwrap_or_default() >= REFUSAL_GRACE
        }),
        _ => true,
    }
}

/// Every message of `rows`, in order, with its route.
fn messages_of(rows: &[outbox::OutboxRow]) -> Vec<(&[u8], Route)> {
    rows.iter()
        .flat_map(|row| {
            row.messages
                .iter()
                .map(|(_, payload)| (payload.as_slice(), row.route))
        })
        .collect()
}

/// Waits out the backoff (doubling it); true when stopped meanwhile.
async fn pause(stop: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = tokio::time::sleep(wait) => stop.is_cancelled(),
        () = stop.cancelled() => true,
    }
}
