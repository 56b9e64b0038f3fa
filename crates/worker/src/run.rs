//! The run of one claimed job: the sync loop (read ahead, write batch by
//! batch, stop for a cancel, a handback, a lost lease, a failure or the
//! wall-time limit) and the writes it makes, each fenced by the lease.
//!
//! Each batch is written in one statement together with its counts, its
//! cursor and a lease renewal (shared with other jobs' batches, see
//! [`crate::commits`]). The source is read one batch ahead, so the last
//! batch commits in the same statement as the job's final status.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::json;
use syncway_connectors::{EntityFailure, MAX_FAILURE_REASONS, SourceError, SyncStart};
use syncway_model::{ConnectorConfig, JobStatus, attempts};
use syncway_store::StoreError;
use syncway_store::jobs::{self, ClaimedJob, Counts, Outcome};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Context;
use crate::commits::PendingCommit;
use crate::heartbeat::heartbeat;
use crate::outage::{GaveUp, while_unavailable};
use crate::outcome::{self, Ended, cancelled, completed, permanent};
use crate::prefetch::{Prefetch, PreparedBatch, ReadBudget};
use crate::running::Signal;
use crate::seen::SeenIds;

/// What writing a batch read ahead came to.
enum Written {
    Running,
    Cancelling,
    Ended(Ended),
}

/// One claimed job being run.
pub(crate) struct JobRun {
    context: Arc<Context>,
    job: ClaimedJob,
    handback: CancellationToken,
    /// Full sync: entities not seen are deleted when it completes.
    full_sync: bool,
    /// Commits this run has applied: the next one is number `applied + 1`
    /// (see [`syncway_store::jobs::Commit::seq`]).
    applied: std::sync::atomic::AtomicI64,
    /// Nothing of the connection is stored as far as this run knows: large
    /// batches are copied without probing first ([`crate::commits`]).
    assume_new: AtomicBool,
    /// A full sync's seen ids, counted for its final commit.
    seen: std::sync::Mutex<SeenIds>,
    /// The first few failed entities and why, for the final outcome.
    failures: std::sync::Mutex<Vec<EntityFailure>>,
}

impl JobRun {
    pub fn new(context: Arc<Context>, job: ClaimedJob, handback: CancellationToken) -> Self {
        // Only a continuous connection runs incrementally, unless forced full.
        let full_sync = !job.source.continuous || job.force_full_sync;
        let assume_new = AtomicBool::new(job.source.stored_entities == 0);
        JobRun {
            context,
            job,
            handback,
            full_sync,
            applied: std::sync::atomic::AtomicI64::new(0),
            assume_new,
            seen: std::sync::Mutex::default(),
            failures: std::sync::Mutex::default(),
        }
    }

    /// Runs the job to its end: registered for cancels, with a heartbeat.
    pub async fn run(self) -> Ended {
        let (signal_tx, mut signal) = watch::channel(Signal::Running);
        let signal_tx = Arc::new(signal_tx);
        self.context.running.insert(self.job.id, signal_tx.clone());
        let heartbeat = tokio::spawn(heartbeat(
            self.context.clone(),
            self.job.id,
            self.job.lease,
            signal_tx,
        ));
        let ended = self.sync(&mut signal).await;
        heartbeat.abort();
        self.context.running.remove(self.job.id);
        ended
    }

    async fn sync(&self, signal: &mut watch::Receiver<Signal>) -> Ended {
        if self.job.status == JobStatus::Cancelling {
            return self.finish(None, cancelled()).await;
        }
        // This claim was one run too many: each earlier run stopped without
        // finishing (a worker killed mid-sync, say).
        let runs_before = self.job.attempt - 1;
        if !attempts::may_run_again(runs_before, self.context.retry.max_attempts) {
            return self.finish(None, outcome::exhausted(runs_before)).await;
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
                        crate::reseal::reseal(
                            &self.context,
                            self.job.source_connection_id,
                            sealed,
                            &opened.credentials,
                        )
                        .await;
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
            budget: crate::budget::for_job(&self.context, self.job.id, self.job.lease),
            connection: self.job.source_connection_id.to_string(),
            stored: crate::stored_ids::for_connection(&self.context, self.job.source_connection_id),
        };
        tracing::info!(
            connector = %source.short_name,
            full_sync = self.full_sync,
            cursor = ?start.cursor,
            "sync starting"
        );
        let limits = &self.context.limits;
        // An http_json batch is a page: bounded by the response size.
        let batch_bytes = match &config {
            ConnectorConfig::HttpJson(_) => limits.max_batch_bytes.max(limits.max_response_bytes),
            _ => limits.max_batch_bytes,
        };
        let budget = ReadBudget {
            memory: self.context.memory.clone(),
            batch_bytes,
        };
        let mut reader = match syncway_connectors::open(&config, start) {
            Ok(source) => Prefetch::spawn(source, limits.max_entity_bytes, budget),
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
        let mut hunger = reader.hunger();
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
                // The reader waits for memory: the batch held back for the
                // job's end is written now, giving its share back.
                true = crate::prefetch::until_hungry(&mut hunger), if pending.is_some() => {
                    if let Some(ready) = pending.take() {
                        match self.write_batch(ready).await {
                            Written::Running => {}
                            Written::Cancelling => return self.finish(None, cancelled()).await,
                            Written::Ended(ended) => return ended,
                        }
                    }
                    continue;
                }
                next = reader.next() => next,
            };
            match next {
                Ok(Some(batch)) => {
                    if let Some(ready) = pending.replace(batch) {
                        match self.write_batch(ready).await {
                            Written::Running => {}
                            Written::Cancelling => return self.finish(pending, cancelled()).await,
                            Written::Ended(ended) => return ended,
                        }
                    }
                }
                Ok(None) => return self.finish(pending, completed()).await,
                Err(error) => {
                    tracing::warn!(kind = error.kind(), %error, "source failed");
                    if let SourceError::Transient { retry_after, .. } = &error
                        && attempts::may_run_again(
                            self.job.attempt,
                            self.context.retry.max_attempts,
                        )
                    {
                        return self.retry(pending, &error, *retry_after).await;
                    }
                    return self.finish(pending, self.failure(&error)).await;
                }
            }
        }
    }

    /// Writes a batch read ahead (not the last); then the job goes on, stops
    /// for a cancel, or has ended (lost, or the database gave up).
    async fn write_batch(&self, batch: PreparedBatch) -> Written {
        match self.write(Some(batch), None).await {
            Ok(Some(JobStatus::Cancelling)) => Written::Cancelling,
            Ok(Some(_)) => Written::Running,
            Ok(None) => Written::Ended(Ended::LostLease),
            Err(ended) => Written::Ended(ended),
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
                self.applied
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    fn commit(&self, batch: Option<PreparedBatch>, outcome: Option<Outcome>) -> Arc<PendingCommit> {
        let batch = batch.unwrap_or_default();
        let seen_total = if self.full_sync {
            self.count_seen(&batch, outcome.as_ref())
        } else {
            None
        };
        // Writes are sequential within a run: the next commit follows the
        // last one applied (a commit that failed was not applied, and the
        // one written instead takes its number).
        let seq = self.applied.load(std::sync::atomic::Ordering::Relaxed) + 1;
        Arc::new(PendingCommit {
            job_id: self.job.id,
            source_connection_id: self.job.source_connection_id,
            run_id: self.job.lease,
            seq,
            full_sync: self.full_sync,
            seen_total,
            mass_delete_min_entities: Some(self.context.mass_delete_min_entities),
            batch,
            outcome,
        })
    }

    /// Adds a full sync's batch to what its run saw; with a completing
    /// outcome, the run's distinct seen ids (if known).
    fn count_seen(&self, batch: &PreparedBatch, outcome: Option<&Outcome>) -> Option<i64> {
        let mut seen = self.seen.lock().ok()?;
        let ids = batch
            .entities
            .iter()
            .map(|entity| entity.entity_id.as_str());
        seen.add(ids, !batch.deleted.is_empty());
        outcome
            .filter(|outcome| outcome.status == JobStatus::Completed)
            .and_then(|_| seen.total())
    }

    /// One attempt at [`Self::write`]: a single statement, shared with the
    /// commits of other jobs that are ready at the same time, or for a large
    /// batch a transaction of its own ([`crate::commits::commit_large`]).
    /// `None`: the lease was lost and nothing was written.
    async fn write_once(
        &self,
        commit: Arc<PendingCommit>,
    ) -> Result<Option<(JobStatus, Counts)>, StoreError> {
        if commit.is_large() {
            let context = &self.context;
            return crate::commits::commit_large(
                &context.pool,
                context.lease_seconds,
                &commit,
                &self.assume_new,
            )
            .await;
        }
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
            match self.write_batch(batch).await {
                Written::Running => {}
                Written::Cancelling => return self.finish(None, cancelled()).await,
                Written::Ended(ended) => return ended,
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
                self.job.lease,
                delay,
                &error_text,
                &details,
            )
            .await
        })
        .await;
        match scheduled {
            Ok(true) => {
                self.context.relay_wake.notify_one();
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
        // Cancelling or not, the job is handed back: the next claim (or the
        // reaper, for a cancelling one) moves it on.
        if let Some(batch) = pending
            && let Written::Ended(ended) = self.write_batch(batch).await
        {
            return ended;
        }
        let released = async {
            let client = self.context.pool.get().await?;
            jobs::release(&client, self.job.id, self.job.lease).await
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
        outcome::failure(error, self.job.attempt)
    }
}
