//! The webhook deliverer: every worker runs one. It claims due deliveries
//! (each held under a lease longer than an attempt can take, so that no
//! other deliverer sends the same attempt while this one lives; after a
//! crash the lease runs out and another sends it: at least once), signs
//! and sends each as its own task, and records the outcome with the next
//! attempt's time (the outcomes that end together in one statement). A subscription has at most `per_endpoint` attempts in
//! flight across all deliverers (one while it fails), so a slow or dead
//! endpoint occupies a few of the slots, never all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use syncway_store::webhooks::deliveries::{self, ClaimLimits, Due, Outcome, Recorded};
use syncway_store::{Batcher, Shape, StoreError, spawn_on_pool};
use syncway_webhooks::schedule;
use syncway_webhooks::send::{Sender, Signed};
use syncway_webhooks::signature::{self, Secret};
use tokio::sync::{Notify, Semaphore};

use crate::Context;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub timeout: Duration,
    pub disable_after_hours: u32,
    pub concurrency: usize,
    pub per_endpoint: u16,
}

/// How often the deliverer looks for due deliveries when the last look
/// found none.
const POLL: Duration = Duration::from_millis(100);

/// How often the backlog gauge is refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

pub async fn run(context: Arc<Context>, options: Options) {
    let sender = match Sender::new(context.policy.clone(), options.timeout) {
        Ok(sender) => sender,
        Err(error) => {
            tracing::error!(error = %error, "cannot build the webhook client; webhooks are not delivered by this worker");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(options.concurrency));
    let recorder = recorder(&context, options);
    // An attempt that ends frees a slot, and may free its subscription's
    // cap: the loop looks again at once rather than after the poll.
    let ended = Arc::new(Notify::new());
    let mut backlog_at = Instant::now();
    loop {
        if backlog_at.elapsed() >= BACKLOG_EVERY {
            backlog_at = Instant::now();
            refresh_backlog(&context).await;
        }
        let free = slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            match claim(&context, options, free).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "claiming webhook deliveries failed");
                    Vec::new()
                }
            }
        };
        let idle = claimed.is_empty();
        for due in claimed {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (context, sender, ended) = (context.clone(), sender.clone(), ended.clone());
            let recorder = recorder.clone();
            tokio::spawn(async move {
                deliver(&context, &sender, &recorder, due).await;
                drop(slot);
                ended.notify_one();
            });
        }
        if idle {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = ended.notified() => {}
                () = context.stopping.cancelled() => break,
            }
        } else if context.stopping.is_cancelled() {
            break;
        }
    }
    // Attempts in flight finish and are recorded (each is bounded by the
    // timeout); one cut off here is sent again once its lease runs out.
    let all = u32::try_from(options.concurrency).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        options.timeout + Duration::from_secs(5),
        slots.acquire_many(all),
    )
    .await;
}

async fn claim(context: &Context, options: Options, free: usize) -> Result<Vec<Due>, StoreError> {
    let client = context.pool.get().await?;
    deliveries::claim(
        &client,
        &context.worker_id,
        ClaimLimits {
            count: i64::try_from(free.min(100)).unwrap_or(100),
            per_subscription: i32::from(options.per_endpoint),
            // Longer than an attempt can take: the deliverer records it
            // before anyone else may take it.
            lease_seconds: options.timeout.as_secs_f64() + 30.0,
        },
    )
    .await
}

async fn refresh_backlog(context: &Context) {
    let Ok(client) = context.pool.get().await else {
        return;
    };
    if let Ok(backlog) = deliveries::backlog(&client).await {
        context.metrics.webhook_backlog.set(backlog);
    }
}

/// The secrets that sign for the subscription now, opened.
fn secrets(context: &Context, due: &Due) -> Result<Vec<Secret>, &'static str> {
    due.secrets
        .iter()
        .map(|sealed| {
            let opened = context
                .cipher
                .open(due.subscription_id, sealed)
                .map_err(|_| "the signing secret cannot be opened")?;
            Secret::from_sealed(&opened.credentials).ok_or("the signing secret is unreadable")
        })
        .collect()
}

/// Records outcomes: every outcome waiting when a lane is free goes in one
/// statement (one commit for many attempts).
type Recorder = Batcher<(Due, Outcome), Result<Recorded, StoreError>>;

fn recorder(context: &Context, options: Options) -> Recorder {
    let owner: Arc<str> = context.worker_id.clone().into();
    let disable_after = i32::try_from(options.disable_after_hours).unwrap_or(i32::MAX);
    spawn_on_pool(
        "webhook records",
        Shape {
            lanes: 2,
            max_batch: 256,
            linger: Duration::ZERO,
        },
        context.pool.clone(),
        move |client, items: Vec<(Due, Outcome)>| {
            let owner = owner.clone();
            async move {
                let pairs: Vec<(&Due, &Outcome)> = items.iter().map(|(d, o)| (d, o)).collect();
                deliveries::record_many(&client, &owner, &pairs, disable_after).await
            }
        },
    )
}

async fn deliver(context: &Context, sender: &Sender, recorder: &Recorder, due: Due) {
    let secrets = match secrets(context, &due) {
        Ok(secrets) => secrets,
        // Nothing can be sent; the lease runs out and it is tried again
        // (a key missing from SYNCWAY_SECURITY__PREVIOUS_KEYS, say).
        Err(reason) => {
            tracing::warn!(subscription = %due.subscription_id, %reason, "a webhook cannot be signed");
            return;
        }
    };
    let id = due.message_id.to_string();
    let timestamp = Utc::now().timestamp();
    let body = due.body.as_bytes();
    let signing: Vec<&Secret> = secrets.iter().collect();
    let signed = Signed {
        id: &id,
        timestamp,
        body,
        signature: signature::header(&signing, &id, timestamp, body),
    };
    let started = Instant::now();
    let attempt = sender.send(&due.url, &signed).await;
    context
        .metrics
        .webhook_seconds
        .observe(started.elapsed().as_secs_f64());
    let made = u32::try_from(due.attempts).unwrap_or(0) + 1;
    let next = if attempt.delivered || attempt.gone {
        None
    } else {
        schedule::next_delay(made, attempt.retry_after)
            .and_then(|delay| chrono::Duration::from_std(delay).ok())
            .map(|delay| Utc::now() + delay)
    };
    let outcome_label = if attempt.delivered {
        "delivered"
    } else if next.is_some() {
        "retrying"
    } else {
        "failed"
    };
    let outcome = Outcome {
        status_code: attempt.status.map(i32::from),
        response: attempt.response.clone(),
        delivered: attempt.delivered,
        next_attempt_at: next,
        gone: attempt.gone,
    };
    let message = due.message_id;
    let subscription = due.subscription_id;
    let recorded = match recorder.submit((due, outcome)).await {
        Ok(recorded) => recorded.map_err(anyhow::Error::from),
        Err(gone) => Err(anyhow::Error::from(gone)),
    };
    match recorded {
        Ok(recorded) => {
            crate::metrics::add_counts(
                &context.metrics.webhook_deliveries,
                "outcome",
                &[(outcome_label, 1)],
            );
            if recorded.disabled {
                tracing::warn!(%subscription, gone = attempt.gone, "a webhook subscription was disabled");
            }
        }
        // The lease runs out and the attempt is made again: at least once.
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), %message, "recording a webhook attempt failed");
        }
    }
}
