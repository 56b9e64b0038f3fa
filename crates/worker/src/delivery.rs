//! One delivery: parse, claim, run, settle the message (ack, requeue or
//! dead-letter) according to how the claim or the run ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use syncway_model::JobMessage;
use syncway_queue::JobDelivery;
use syncway_store::StoreError;
use syncway_store::jobs::{self, Claim};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::outage::{GaveUp, while_unavailable};
use crate::outcome::Ended;
use crate::run::JobRun;
use crate::running::Local;

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
    // A claim never takes a job this process runs: its own message may come
    // back (the broker closed its channel, or its lease ran out while it was
    // cut off), and a second run of the job here must not start.
    let lease = Duration::from_secs_f64(context.lease_seconds);
    match context.running.local(message.job_id, lease) {
        Local::NotHere => {}
        Local::Live => {
            tracing::info!("duplicate delivery of a job this process already runs; dropping it");
            context.metrics.duplicate_deliveries.inc();
            settle("ack", delivery.ack().await);
            return;
        }
        Local::Stale => {
            // Its run here could not renew the lease for a lease's length:
            // another worker must be able to take the job over.
            tracing::warn!(
                "delivery of a job this process runs but cannot renew; handing the message back for another worker"
            );
            settle("requeue", delivery.requeue().await);
            return;
        }
    }
    // Through a database outage for at most a lease: a worker cut off from
    // the database hands the message back for one that is not.
    let claiming = while_unavailable(&context.stopping, "claiming the job", || async {
        match context.claims.submit(message.job_id).await {
            Ok(claim) => claim,
            Err(gone) => Err(StoreError::Corrupt(gone.to_string())),
        }
    });
    let Ok(claim) = tokio::time::timeout(lease, claiming).await else {
        tracing::warn!(
            "the database did not answer for a lease; handing the message back for another worker"
        );
        settle("requeue", delivery.requeue().await);
        return;
    };
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
        Ok(Claim::Throttled) => {
            // Its organization runs its share: the job waits in Postgres
            // until one of the organization's jobs stops running and lets it
            // go (with a message of its own). This one is done with.
            tracing::info!("held back by its organization's share; it waits for a slot");
            context.metrics.fair_share_waits.inc();
            settle("ack", delivery.ack().await);
        }
        Ok(Claim::Held) => {
            tracing::info!("duplicate delivery of a job another claim holds; dropping it");
            context.metrics.duplicate_deliveries.inc();
            settle("ack", delivery.ack().await);
        }
        Ok(Claim::Locked) => {
            // Whoever holds its row loses it within the session bound; then
            // a redelivered or re-enqueued message (the reaper) claims it.
            tracing::warn!(
                "the job's row is locked by another session (a frozen or cut-off worker's?); dropping this delivery, the reaper moves it on"
            );
            context.metrics.duplicate_deliveries.inc();
            settle("ack", delivery.ack().await);
        }
        Ok(Claim::RetryWait) => {
            tracing::info!(
                "delivery of a job waiting for its retry; dropping it (its delayed message brings it back)"
            );
            context.metrics.duplicate_deliveries.inc();
            settle("ack", delivery.ack().await);
        }
        Ok(Claim::Claimed(job)) => {
            tracing::Span::current().record("attempt", job.attempt);
            tracing::info!("claimed the job");
            context.metrics.jobs_claimed.inc();
            context.metrics.jobs_running.inc();
            let started = Instant::now();
            let organization = job.organization_id;
            let short_name = job.source.short_name.clone();
            let ended = JobRun::new(context.clone(), *job, handback).run().await;
            context.metrics.jobs_running.dec();
            if matches!(ended, Ended::Finished(_) | Ended::Retrying) {
                // Its slot in the organization's share and its source
                // type's cap is free.
                release_held(&context, organization, &short_name).await;
            }
            let outcome = match &ended {
                Ended::Finished(status) => Some(status.to_string()),
                Ended::LostLease => Some("lost_lease".to_owned()),
                Ended::HandedBack => Some("handed_back".to_owned()),
                Ended::Retrying => Some("retrying".to_owned()),
                Ended::Stopped => None,
            };
            if let Some(outcome) = outcome {
                context
                    .metrics
                    .job_seconds
                    .get_or_create(&vec![("outcome", outcome)])
                    .observe(started.elapsed().as_secs_f64());
            }
            match ended {
                Ended::Finished(status) => {
                    context
                        .metrics
                        .jobs_finished
                        .get_or_create(&vec![("status", status.to_string())])
                        .inc();
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

/// Under a fair share, lets one of `organization`'s held jobs go, and
/// under a cap on `short_name`, one of the source type's: a job of them
/// stopped running. A failure is only logged: the reaper finds the room and
/// lets it go later.
async fn release_held(context: &Context, organization: uuid::Uuid, short_name: &str) {
    let limits = &context.claim_limits;
    let capped = limits
        .source_type_caps
        .iter()
        .any(|(name, _)| name == short_name);
    if limits.max_per_org.is_none() && !capped {
        return;
    }
    let released = async {
        let mut client = context.pool.get().await?;
        let mut ids = Vec::new();
        if limits.max_per_org.is_some() {
            ids.extend(jobs::release_held(&mut client, organization, 1).await?);
        }
        if capped {
            ids.extend(jobs::release_source_type(&mut client, short_name, 1).await?);
        }
        Ok::<_, syncway_store::StoreError>(ids)
    }
    .await;
    match released {
        Ok(ids) => {
            if !ids.is_empty() {
                context.relay_wake.notify_one();
            }
            for job_id in ids {
                tracing::info!(%job_id, "let a held job go");
            }
        }
        Err(error) => {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "could not let a held job go; the reaper will")
        }
    }
}
