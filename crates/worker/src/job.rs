//! One delivery: parse, claim, run the sync batch by batch, settle.
//!
//! Each batch is written in one transaction together with its counts, its
//! cursor and a lease renewal, fenced by the lease (a worker that lost the
//! job cannot write). The source is read one batch ahead, so the last batch
//! commits in the same transaction as the job's final status. The message is
//! acked only after that commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use syncway_connectors::{EntityBatch, EntityFailure, MAX_FAILURE_REASONS, SourceError, SyncStart};
use syncway_model::{ConnectorConfig, JobMessage, JobStatus};
use syncway_queue::JobDelivery;
use syncway_store::StoreError;
use syncway_store::jobs::{self, Claim, ClaimedJob, Counts, EntityWrite, Outcome};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::commits::PendingCommit;
use crate::retry::{GaveUp, while_unavailable};

/// Handles one delivery to the end. `handback` is cancelled when the
/// shutdown grace period is over: running jobs then give their job back.
pub async fn handle(context: Arc<Context>, delivery: JobDelivery, handback: CancellationToken) {
    let message = match JobMessage::decode(delivery.body()) {
        Ok(message) => message,
        Err(error) => {
            tracing::warn!(%error, "dead-lettering a message that is not a runnable job message");
            dead_letter(&context, &delivery).await;
            return;
        }
    };
    let span = tracing::info_span!(
        "job",
        job_id = %message.job_id,
        source_connection_id = %message.source_connection_id,
        attempt = tracing::field::Empty,
    );
    handle_job(context, delivery, message, handback)
        .instrument(span)
        .await;
}

/// Rejects the message to the dead-letter queue, and counts it.
async fn dead_letter(context: &Context, delivery: &JobDelivery) {
    context.metrics.dead_lettered.inc();
    settle("dead-letter", delivery.dead_letter().await);
}

fn settle(what: &str, result: Result<(), syncway_queue::QueueError>) {
    if let Err(error) = result {
        // The channel is gone; the broker redelivers the message, and the
        // guarded claim makes the second delivery harmless.
        tracing::warn!(%error, "could not {what} the message");
    }
}

async fn handle_job(
    context: Arc<Context>,
    delivery: JobDelivery,
    message: JobMessage,
    handback: CancellationToken,
) {
    let claim = while_unavailable(&context.stopping, "claiming the job", || async {
        match context.claims.submit(message.job_id).await {
            Ok(claim) => claim,
            Err(gone) => Err(StoreError::Corrupt(gone.to_string())),
        }
    })
    .await;
    match claim {
        Err(GaveUp::Stopped) => settle("requeue", delivery.requeue().await),
        Err(GaveUp::Failed(error)) => {
            tracing::error!(error = %format!("{:#}", anyhow::Error::from(error)), "cannot claim the job; dead-lettering its message");
            dead_letter(&context, &delivery).await;
        }
        Ok(Claim::Missing) => {
            let deleted = async {
                let client = context.pool.get().await?;
                jobs::was_deleted(&client, message.job_id).await
            }
            .await;
            match deleted {
                Ok(false) => {
                    tracing::warn!("dead-lettering a message that names no job");
                    dead_letter(&context, &delivery).await;
                }
                // Deleted with its connection (or the database cannot say:
                // requeueing could loop, and the message runs nothing).
                Ok(true) | Err(_) => {
                    tracing::info!("the job was deleted with its connection; dropping the message");
                    context.metrics.dropped_messages.inc();
                    settle("ack", delivery.ack().await);
                }
            }
        }
        Ok(Claim::Finished(status)) => {
            tracing::info!(%status, "duplicate delivery of a finished job; dropping it");
            context.metrics.duplicate_deliveries.inc();
            settle("ack", delivery.ack().await);
        }
        Ok(Claim::Throttled {
            source_connection_id,
        }) => {
            // Its organization runs its share: try again after a short
            // delay (no attempt used). The copy is queued before this one is
            // acked, so the job always has a message.
            context.metrics.fair_share_waits.inc();
            let again = JobMessage::new(message.job_id, source_connection_id).encode();
            let delay = i64::try_from(context.fair_share_delay.as_millis()).unwrap_or(i64::MAX);
            let queued = while_unavailable(&context.stopping, "holding a job back", || async {
                let client = context.pool.get().await?;
                syncway_store::outbox::enqueue_delayed(&client, message.job_id, &again, delay).await
            })
            .await;
            match queued {
                Ok(()) => settle("ack", delivery.ack().await),
                Err(_) => settle("requeue", delivery.requeue().await),
            }
        }
        Ok(Claim::Leased) => {
            tracing::info!("duplicate delivery of a job another worker holds; dropping it");
            context.metrics.duplicate_deliveries.inc();
            settle("ack", delivery.ack().await);
        }
        Ok(Claim::Claimed(job)) => {
            tracing::Span::current().record("attempt", job.attempt);
            context.metrics.jobs_claimed.inc();
            context.metrics.jobs_running.inc();
            let started = Instant::now();
            let ended = JobRun::new(context.clone(), job, handback).run().await;
            context.metrics.jobs_running.dec();
            match ended {
                Ended::Finished(status) => {
                    context
                        .metrics
                        .jobs_finished
                        .get_or_create(&vec![("status", status.to_string())])
                        .inc();
                    context
                        .metrics
                        .job_seconds
                        .observe(started.elapsed().as_secs_f64());
                    tracing::info!(%status, elapsed = ?started.elapsed(), "job ended");
                    settle("ack", delivery.ack().await);
                }
                Ended::LostLease => {
                    tracing::warn!("lost the job's lease (taken over or deleted); stopped");
                    settle("ack", delivery.ack().await);
                }
                Ended::HandedBack => {
                    tracing::info!("shutting down: job handed back for another worker");
                    settle("requeue", delivery.requeue().await);
                }
                Ended::Retrying => {
                    // The next attempt's message is in the outbox (delay
                    // queue), committed with the job's retry state.
                    context.metrics.retries_scheduled.inc();
                    settle("ack", delivery.ack().await);
                }
                Ended::Stopped => {
                    // The database is unreachable and we are stopping: leave
                    // the message unacked; the broker redelivers it when this
                    // connection closes, and the lease expires meanwhile.
                    tracing::warn!(
                        "stopping while the database is unavailable; job left to its lease"
                    );
                }
            }
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Finished(JobStatus),
    LostLease,
    HandedBack,
    Stopped,
    /// A transient failure: another attempt is scheduled (delay queue).
    Retrying,
}

/// The jobs running in this process, by id, each with the channel that
/// tells its run to stop: a cancel from the control exchange lands here.
#[derive(Debug, Default)]
pub(crate) struct Running(std::sync::Mutex<HashMap<uuid::Uuid, Arc<watch::Sender<Signal>>>>);

impl Running {
    fn insert(&self, job_id: uuid::Uuid, signal: Arc<watch::Sender<Signal>>) {
        if let Ok(mut running) = self.0.lock() {
            running.insert(job_id, signal);
        }
    }

    fn remove(&self, job_id: uuid::Uuid) {
        if let Ok(mut running) = self.0.lock() {
            running.remove(&job_id);
        }
    }

    /// Tells the job's run to stop and end `cancelled`; false when the job
    /// does not run here.
    pub fn cancel(&self, job_id: uuid::Uuid) -> bool {
        let signal = self
            .0
            .lock()
            .ok()
            .and_then(|running| running.get(&job_id).cloned());
        match signal {
            Some(signal) => {
                signal.send_replace(Signal::Cancel);
                true
            }
            None => false,
        }
    }
}

/// What the heartbeat tells the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Running,
    Cancel,
    Lost,
}

/// A source batch, hashed and de-duplicated, ready to write.
#[derive(Debug, Default)]
pub(crate) struct PreparedBatch {
    pub entities: Vec<EntityWrite>,
    pub deleted: Vec<String>,
    pub failed: i64,
    pub cursor: Option<serde_json::Value>,
    /// Why some of the failed entities failed.
    pub failures: Vec<EntityFailure>,
}

/// Entity ids longer than this cannot be stored (the primary key's index
/// entries are bounded) and count as failed.
const MAX_ENTITY_ID_BYTES: usize = 1024;

/// Why Postgres could not store this id or payload text, if it could not.
fn unstorable(entity_id: &str) -> Option<&'static str> {
    if entity_id.is_empty() {
        Some("an empty entity id")
    } else if entity_id.len() > MAX_ENTITY_ID_BYTES {
        Some("an entity id over 1024 bytes")
    } else if entity_id.contains('\0') {
        Some("an entity id with a NUL character")
    } else {
        None
    }
}

impl PreparedBatch {
    /// Hashes each entity; a later duplicate of an id replaces the earlier
    /// one, and an id both written and deleted is written. An entity whose
    /// payload serializes to more than `max_entity_bytes`, or whose id
    /// Postgres cannot store, counts as failed.
    fn new(batch: EntityBatch, max_entity_bytes: u64) -> Self {
        let mut positions: HashMap<String, usize> = HashMap::with_capacity(batch.entities.len());
        let mut entities: Vec<EntityWrite> = Vec::with_capacity(batch.entities.len());
        let mut failed = batch.failed as i64;
        let mut failures = batch.failures;
        let mut fail = |failed: &mut i64, entity_id: String, reason: String| {
            *failed += 1;
            if failures.len() < MAX_FAILURE_REASONS {
                failures.push(EntityFailure { entity_id, reason });
            }
        };
        for entity in batch.entities {
            if let Some(reason) = unstorable(&entity.id) {
                let shown: String = entity.id.chars().take(64).filter(|c| *c != '\0').collect();
                fail(&mut failed, shown, reason.into());
                continue;
            }
            let Ok((payload, content_hash)) = syncway_model::canonical_json(&entity.payload) else {
                // Not representable as JSON: counted as failed, like any
                // entity the source could not produce.
                fail(
                    &mut failed,
                    entity.id,
                    "the payload is not representable as JSON".into(),
                );
                continue;
            };
            let write = EntityWrite {
                entity_id: entity.id,
                content_hash,
                payload,
            };
            if write.payload.len() as u64 > max_entity_bytes {
                let reason = format!(
                    "the payload is {} bytes, over the limit of {max_entity_bytes} \
                     (SYNCWAY_CONNECTORS__MAX_ENTITY_BYTES)",
                    write.payload.len()
                );
                fail(&mut failed, write.entity_id, reason);
                continue;
            }
            match positions.get(&write.entity_id) {
                Some(&at) => entities[at] = write,
                None => {
                    positions.insert(write.entity_id.clone(), entities.len());
                    entities.push(write);
                }
            }
        }
        let mut deleted = batch.deleted;
        deleted.retain(|id| !positions.contains_key(id) && unstorable(id).is_none());
        deleted.sort_unstable();
        deleted.dedup();
        PreparedBatch {
            entities,
            deleted,
            failed,
            cursor: batch.cursor,
            failures,
        }
    }
}

/// Reads and prepares (hashes) the source's batches in a task of its own,
/// one batch ahead, so that the next batch is read while the current one is
/// written. At most three batches are in memory: one being written, one
/// ready, one being read.
struct Prefetch {
    batches: tokio::sync::mpsc::Receiver<Result<Option<PreparedBatch>, SourceError>>,
    task: tokio::task::AbortHandle,
    ended: bool,
}

impl Prefetch {
    fn spawn(mut source: Box<dyn syncway_connectors::Source>, max_entity_bytes: u64) -> Self {
        let (sender, batches) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                let next = match source.next_batch().await {
                    Ok(Some(batch)) => Ok(Some(PreparedBatch::new(batch, max_entity_bytes))),
                    Ok(None) => Ok(None),
                    Err(error) => Err(error),
                };
                let more = matches!(next, Ok(Some(_)));
                if sender.send(next).await.is_err() || !more {
                    return;
                }
            }
        })
        .abort_handle();
        Prefetch {
            batches,
            task,
            ended: false,
        }
    }

    async fn next(&mut self) -> Result<Option<PreparedBatch>, SourceError> {
        if self.ended {
            return Ok(None);
        }
        match self.batches.recv().await {
            Some(Ok(None)) => {
                self.ended = true;
                Ok(None)
            }
            Some(next) => next,
            // The reading task died (a panic in a connector): that is not
            // the end of the source, or a full sync would delete the rest.
            None => Err(SourceError::Transient {
                message: "the source reader stopped unexpectedly".into(),
                retry_after: None,
            }),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct JobRun {
    context: Arc<Context>,
    job: ClaimedJob,
    handback: CancellationToken,
    /// Full sync: entities not seen are deleted when it completes.
    full_sync: bool,
    /// The first few failed entities and why, for the final outcome.
    failures: std::sync::Mutex<Vec<EntityFailure>>,
}

impl JobRun {
    fn new(context: Arc<Context>, job: ClaimedJob, handback: CancellationToken) -> Self {
        // Only a continuous connection runs incrementally, unless forced full.
        let full_sync = !job.source.continuous || job.force_full_sync;
        JobRun {
            context,
            job,
            handback,
            full_sync,
            failures: std::sync::Mutex::default(),
        }
    }

    async fn run(self) -> Ended {
        let (signal_tx, mut signal) = watch::channel(Signal::Running);
        let signal_tx = Arc::new(signal_tx);
        self.context.running.insert(self.job.id, signal_tx.clone());
        let heartbeat = tokio::spawn(heartbeat(self.context.clone(), self.job.id, signal_tx));
        let ended = self.sync(&mut signal).await;
        heartbeat.abort();
        self.context.running.remove(self.job.id);
        ended
    }

    async fn sync(&self, signal: &mut watch::Receiver<Signal>) -> Ended {
        if self.job.status == JobStatus::Cancelling {
            return self.finish(None, cancelled()).await;
        }
        let max_attempts = self.context.retry.max_attempts;
        if self.job.attempt > max_attempts {
            // Taken over once too often: each earlier run stopped without
            // finishing (a worker killed mid-sync, say).
            let exhausted = Outcome {
                status: JobStatus::Failed,
                error: Some(format!(
                    "gave up after {max_attempts} attempts: each stopped without finishing"
                )),
                error_category: None,
                error_details: Some(json!({ "kind": "exhausted", "attempts": max_attempts })),
            };
            return self.finish(None, exhausted).await;
        }
        let source = &self.job.source;
        let config = match ConnectorConfig::parse(&source.short_name, &source.config) {
            Ok(config) => config,
            Err(error) => {
                return self
                    .finish(
                        None,
                        permanent(format!("stored connector config is invalid: {error}")),
                    )
                    .await;
            }
        };
        let credentials = match &source.credentials {
            None => None,
            Some(sealed) => match self
                .context
                .cipher
                .open(self.job.source_connection_id, sealed)
            {
                Ok(opened) => {
                    if opened.stale {
                        self.reseal(sealed, &opened.credentials).await;
                    }
                    Some(opened.credentials)
                }
                Err(error) => return self.finish(None, permanent(error.to_string())).await,
            },
        };
        let start = SyncStart {
            cursor: if self.full_sync {
                None
            } else {
                source.cursor.clone()
            },
            credentials,
            cursor_field: source.cursor_field.clone(),
            policy: self.context.policy.clone(),
            limits: self.context.limits,
        };
        tracing::info!(
            connector = %source.short_name,
            full_sync = self.full_sync,
            cursor = ?start.cursor,
            "sync starting"
        );
        let mut reader = match syncway_connectors::open(&config, start) {
            Ok(source) => Prefetch::spawn(source, self.context.limits.max_entity_bytes),
            Err(error) => return self.finish(None, self.failure(&error)).await,
        };
        // The job's wall-time limit, counted from its first start.
        let ran = (chrono::Utc::now() - self.job.started_at)
            .to_std()
            .unwrap_or_default();
        let overrun = tokio::time::sleep(self.context.max_job.saturating_sub(ran));
        tokio::pin!(overrun);

        // Read one batch ahead, so that the last batch commits with the
        // job's final status.
        let mut pending: Option<PreparedBatch> = None;
        // The heartbeat only ever signals Cancel or Lost; both end the run,
        // so a pending read is never abandoned for nothing.
        let mut heartbeat_alive = true;
        loop {
            let next = tokio::select! {
                biased;
                () = self.handback.cancelled() => return self.hand_back(pending).await,
                () = &mut overrun => {
                    let limit = self.context.max_job.as_secs();
                    let error = SourceError::Permanent(format!(
                        "the job ran longer than its limit of {limit} s \
                         (SYNCWAY_WORKER__MAX_JOB_SECONDS)"
                    ));
                    return self.finish(pending, self.failure(&error)).await;
                }
                changed = signal.changed(), if heartbeat_alive => {
                    let now = *signal.borrow_and_update();
                    match (changed, now) {
                        (Ok(()), Signal::Lost) => return Ended::LostLease,
                        (Ok(()), Signal::Cancel) => return self.finish(pending, cancelled()).await,
                        (Ok(()), Signal::Running) => continue,
                        (Err(_), _) => {
                            tracing::error!("heartbeat stopped; the batch fence still guards writes");
                            heartbeat_alive = false;
                            continue;
                        }
                    }
                }
                next = reader.next() => next,
            };
            match next {
                Ok(Some(batch)) => {
                    if let Some(ready) = pending.replace(batch) {
                        match self.write(Some(ready), None).await {
                            Ok(Some(JobStatus::Cancelling)) => {
                                return self.finish(pending, cancelled()).await;
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => return Ended::LostLease,
                            Err(ended) => return ended,
                        }
                    }
                }
                Ok(None) => return self.finish(pending, completed()).await,
                Err(error) => {
                    tracing::warn!(kind = error.kind(), %error, "source failed");
                    if let SourceError::Transient { retry_after, .. } = &error
                        && self.job.attempt < self.context.retry.max_attempts
                    {
                        return self.retry(pending, &error, *retry_after).await;
                    }
                    return self.finish(pending, self.failure(&error)).await;
                }
            }
        }
    }

    /// Commits `batch` (if any) and ends the job with `outcome`, which
    /// carries the reasons of the first few failed entities.
    async fn finish(&self, batch: Option<PreparedBatch>, mut outcome: Outcome) -> Ended {
        if let Some(batch) = &batch {
            self.keep_failures(&batch.failures);
        }
        let failures = self
            .failures
            .lock()
            .map(|failures| failures.clone())
            .unwrap_or_default();
        if !failures.is_empty() {
            let listed: Vec<serde_json::Value> = failures
                .iter()
                .map(|f| json!({"entity_id": f.entity_id, "reason": f.reason}))
                .collect();
            let details = outcome.error_details.get_or_insert_with(|| json!({}));
            if let Some(details) = details.as_object_mut() {
                details.insert("failed_entities".into(), listed.into());
            }
        }
        match self.write(batch, Some(outcome)).await {
            Ok(Some(status)) => Ended::Finished(status),
            Ok(None) => Ended::LostLease,
            Err(ended) => ended,
        }
    }

    /// Writes a batch and/or the final outcome in one transaction, retrying
    /// through database outages. `Ok(None)`: the lease was lost.
    async fn write(
        &self,
        batch: Option<PreparedBatch>,
        outcome: Option<Outcome>,
    ) -> Result<Option<JobStatus>, Ended> {
        if outcome.is_none()
            && let Some(batch) = &batch
        {
            self.keep_failures(&batch.failures);
        }
        let commit = self.commit(batch, outcome);
        let written = while_unavailable(&self.context.stopping, "writing a batch", || {
            self.write_once(commit.clone())
        })
        .await;
        match written {
            Ok(Some((status, counts))) => {
                self.count(counts);
                Ok(Some(status))
            }
            Ok(None) => Ok(None),
            Err(GaveUp::Stopped) => Err(Ended::Stopped),
            Err(GaveUp::Failed(error)) => {
                tracing::error!(error = %format!("{:#}", anyhow::Error::from(error)), "writing the job's data failed");
                // Record the failure without the batch, so the job ends.
                let failed = permanent("internal error while storing the sync's data".into());
                match self.write_once(self.commit(None, Some(failed))).await {
                    Ok(Some((status, _))) => Err(Ended::Finished(status)),
                    Ok(None) => Err(Ended::LostLease),
                    Err(_) => Err(Ended::Stopped),
                }
            }
        }
    }

    fn keep_failures(&self, failures: &[EntityFailure]) {
        if let Ok(mut kept) = self.failures.lock() {
            let room = MAX_FAILURE_REASONS.saturating_sub(kept.len());
            kept.extend(failures.iter().take(room).cloned());
        }
    }

    /// Seals credentials opened with a previous key (or the old format)
    /// again with the current key; a failure only leaves them as they are.
    async fn reseal(&self, sealed: &[u8], credentials: &serde_json::Value) {
        let connection = self.job.source_connection_id;
        let fresh = self.context.cipher.seal(connection, credentials);
        let resealed = async {
            let client = self.context.pool.get().await?;
            syncway_store::connections::reseal_credentials(&client, connection, sealed, &fresh)
                .await
        }
        .await;
        match resealed {
            Ok(_) => tracing::info!("credentials sealed again with the current key"),
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "could not seal the credentials again")
            }
        }
    }

    fn commit(&self, batch: Option<PreparedBatch>, outcome: Option<Outcome>) -> Arc<PendingCommit> {
        Arc::new(PendingCommit {
            job_id: self.job.id,
            source_connection_id: self.job.source_connection_id,
            full_sync: self.full_sync,
            batch: batch.unwrap_or_default(),
            outcome,
        })
    }

    /// One attempt at [`Self::write`]: a single statement, shared with the
    /// commits of other jobs that are ready at the same time. `None`: the
    /// lease was lost and nothing was written.
    async fn write_once(
        &self,
        commit: Arc<PendingCommit>,
    ) -> Result<Option<(JobStatus, Counts)>, StoreError> {
        match self.context.commits.submit(commit).await {
            Ok(written) => written,
            Err(gone) => Err(StoreError::Corrupt(gone.to_string())),
        }
    }

    fn count(&self, counts: Counts) {
        let count = |value: i64| u64::try_from(value).unwrap_or(0);
        crate::metrics::add_counts(
            &self.context.metrics.entities,
            "outcome",
            &[
                ("inserted", count(counts.inserted)),
                ("updated", count(counts.updated)),
                ("deleted", count(counts.deleted)),
                ("failed", count(counts.failed)),
            ],
        );
    }

    /// A transient failure with attempts left: commit what was read, then
    /// schedule the next attempt after a backoff (at least the source's
    /// Retry-After). The job stays `running`; the next attempt resumes from
    /// what is committed.
    async fn retry(
        &self,
        pending: Option<PreparedBatch>,
        error: &SourceError,
        retry_after: Option<Duration>,
    ) -> Ended {
        if let Some(batch) = pending {
            match self.write(Some(batch), None).await {
                Ok(Some(JobStatus::Cancelling)) => return self.finish(None, cancelled()).await,
                Ok(Some(_)) => {}
                Ok(None) => return Ended::LostLease,
                Err(ended) => return ended,
            }
        }
        // At least the source's Retry-After, but never past the cap: one
        // tenant's source cannot park its job (or the broker) for ever.
        let delay = self
            .context
            .retry
            .delay(self.job.attempt)
            .max(retry_after.unwrap_or_default())
            .min(self.context.retry.max_delay);
        let details = json!({
            "kind": error.kind(),
            "attempts": self.job.attempt,
            "next_attempt_in_seconds": delay.as_secs_f64(),
        });
        let message = syncway_model::JobMessage::new(self.job.id, self.job.source_connection_id);
        let error_text = error.to_string();
        let scheduled = while_unavailable(&self.context.stopping, "scheduling a retry", || async {
            let client = self.context.pool.get().await?;
            jobs::schedule_retry(
                &client,
                &message,
                &self.context.worker_id,
                delay,
                &error_text,
                &details,
            )
            .await
        })
        .await;
        match scheduled {
            Ok(true) => {
                tracing::info!(attempt = self.job.attempt, retry_in = ?delay, "transient failure; retry scheduled");
                Ended::Retrying
            }
            // Cancelled meanwhile (the job is `cancelling`), or taken over.
            Ok(false) => self.finish(None, cancelled()).await,
            Err(GaveUp::Stopped) => Ended::Stopped,
            Err(GaveUp::Failed(cause)) => {
                tracing::error!(error = %format!("{:#}", anyhow::Error::from(cause)), "cannot schedule a retry");
                self.finish(None, self.failure(error)).await
            }
        }
    }

    /// Shutdown grace is over: commit what was read, release the lease.
    async fn hand_back(&self, pending: Option<PreparedBatch>) -> Ended {
        if let Some(batch) = pending {
            match self.write(Some(batch), None).await {
                Ok(Some(_)) => {}
                Ok(None) => return Ended::LostLease,
                Err(ended) => return ended,
            }
        }
        let released = async {
            let client = self.context.pool.get().await?;
            jobs::release(&client, self.job.id, &self.context.worker_id).await
        }
        .await;
        match released {
            Ok(true) => Ended::HandedBack,
            Ok(false) => Ended::LostLease,
            Err(error) => {
                tracing::warn!(%error, "could not release the lease; it will expire");
                Ended::HandedBack
            }
        }
    }

    fn failure(&self, error: &SourceError) -> Outcome {
        let mut details = json!({ "kind": error.kind(), "attempts": self.job.attempt });
        let mut outcome = Outcome {
            status: JobStatus::Failed,
            error: Some(error.to_string()),
            error_category: None,
            error_details: None,
        };
        match error {
            SourceError::Credentials { category, .. } => {
                outcome.error_category = Some(category.to_string());
            }
            SourceError::Transient { retry_after, .. } => {
                if let Some(wait) = retry_after {
                    details["retry_after_seconds"] = json!(wait.as_secs_f64());
                }
            }
            SourceError::Permanent(_) => {}
        }
        outcome.error_details = Some(details);
        outcome
    }
}

fn completed() -> Outcome {
    Outcome {
        status: JobStatus::Completed,
        error: None,
        error_category: None,
        error_details: None,
    }
}

fn cancelled() -> Outcome {
    Outcome {
        status: JobStatus::Cancelled,
        ..completed()
    }
}

fn permanent(message: String) -> Outcome {
    Outcome {
        status: JobStatus::Failed,
        error: Some(message),
        error_category: None,
        error_details: Some(json!({ "kind": "permanent" })),
    }
}

/// Renews the lease every third of its length; reports a cancel request or
/// the loss of the job.
async fn heartbeat(context: Arc<Context>, job_id: uuid::Uuid, signal: Arc<watch::Sender<Signal>>) {
    let period = Duration::from_secs_f64(context.lease_seconds / 3.0);
    loop {
        tokio::time::sleep(period).await;
        let renewed = async {
            let client = context.pool.get().await?;
            jobs::heartbeat(&client, job_id, &context.worker_id, context.lease_seconds).await
        }
        .await;
        match renewed {
            Ok(Some(JobStatus::Cancelling)) => {
                signal.send_replace(Signal::Cancel);
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                signal.send_replace(Signal::Lost);
                return;
            }
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "heartbeat failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncway_connectors::SourceEntity;

    #[test]
    fn a_batch_keeps_the_last_copy_of_an_id_and_drops_deletes_it_writes() {
        let entity = |id: &str, v: i64| SourceEntity {
            id: id.into(),
            payload: json!({ "v": v }),
        };
        let batch = PreparedBatch::new(
            EntityBatch {
                entities: vec![entity("a", 1), entity("b", 1), entity("a", 2)],
                deleted: vec!["b".into(), "c".into(), "c".into()],
                failed: 2,
                cursor: Some(json!(9)),
                ..EntityBatch::default()
            },
            1 << 20,
        );
        let ids: Vec<&str> = batch
            .entities
            .iter()
            .map(|e| e.entity_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(batch.entities[0].payload, r#"{"v":2}"#);
        assert_eq!(batch.deleted, ["c"]);
        assert_eq!(batch.failed, 2);
    }

    #[test]
    fn oversized_and_unstorable_entities_fail_with_their_reason() {
        let batch = PreparedBatch::new(
            EntityBatch {
                entities: vec![
                    SourceEntity {
                        id: "big".into(),
                        payload: json!({"body": "x".repeat(2000)}),
                    },
                    SourceEntity {
                        id: "nul\0id".into(),
                        payload: json!({}),
                    },
                    SourceEntity {
                        id: "k".repeat(2000),
                        payload: json!({}),
                    },
                    SourceEntity {
                        id: "ok".into(),
                        payload: json!({"body": "x"}),
                    },
                ],
                ..EntityBatch::default()
            },
            1024,
        );
        let ids: Vec<&str> = batch
            .entities
            .iter()
            .map(|e| e.entity_id.as_str())
            .collect();
        assert_eq!(ids, ["ok"]);
        assert_eq!(batch.failed, 3);
        let reasons: Vec<&str> = batch.failures.iter().map(|f| f.reason.as_str()).collect();
        assert!(reasons[0].contains("over the limit of 1024"), "{reasons:?}");
        assert!(reasons[1].contains("NUL"), "{reasons:?}");
        assert!(reasons[2].contains("1024 bytes"), "{reasons:?}");
    }
}
