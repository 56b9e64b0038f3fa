//! The reaper: every worker runs one. See [`syncway_store::jobs::reap`] for
//! what it moves on; rows another worker's reaper holds are skipped, so any
//! number can run at once. It also lets held jobs go for organizations
//! and source types whose share has room no running job's end has
//! released ([`syncway_store::jobs::release_room`]), and jobs a pause held
//! once no pause holds them (a resume releases them itself; this is the
//! backstop should its process die).

use std::sync::Arc;
use std::time::Duration;

use syncway_queue::Broker;
use syncway_store::StoreError;

use crate::Context;

/// Jobs a release lets go per transaction.
const RELEASE_BATCH: i64 = 1000;

#[derive(Debug, Clone)]
pub struct Options {
    pub interval: Duration,
    pub requeue_after: Duration,
    /// Where to ask how many job messages wait in the queue.
    pub amqp_url: String,
    pub namespace: String,
    /// The fair share and the caps per source type (`limits.*`).
    pub limits: syncway_store::jobs::ClaimLimits,
    /// The session bound (`worker.session_bound()`).
    pub bound: Duration,
}

pub async fn run(context: Arc<Context>, options: Options) {
    // A job's lease expired more than one lease length ago: its worker is
    // gone, and a redelivered message would have claimed it by now.
    let grace = Duration::from_secs_f64(context.lease_seconds);
    let mut queue = QueueView::default();
    loop {
        // Spread the passes of many workers, never further apart than the
        // interval (the recovery bound counts on it).
        let pause = options.interval.mul_f64(rand::random_range(0.8..=1.0));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = context.stopping.cancelled() => break,
        }
        match pass(&context, &options, grace, &mut queue).await {
            Ok(reaped) => {
                context.metrics.reaper_passes.inc();
                report(&context, &reaped);
            }
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "reaper pass failed; trying again next interval");
            }
        }
    }
    queue.close().await;
}

async fn pass(
    context: &Context,
    options: &Options,
    grace: Duration,
    queue: &mut QueueView,
) -> Result<syncway_store::jobs::Reaped, StoreError> {
    let mut client = context.pool.get().await?;
    // A worker whose lease ran out may still hold its job's row, frozen in
    // a statement that waits for it: its session goes first.
    for worker in syncway_store::jobs::terminate_stuck(&client, options.bound).await? {
        tracing::warn!(%worker, "terminated a session of a worker whose lease ran out, stuck inside a transaction waiting for it");
    }
    // Pending jobs are suspected only once one has waited requeue_after;
    // then as many are re-enqueued as the queue lacks messages for.
    let published = syncway_store::jobs::pending_published(&client, options.requeue_after).await?;
    let seen_missing = if published == 0 {
        0
    } else {
        match queue.ready(options).await {
            Some(ready) => (published - i64::from(ready)).max(0),
            // Nothing can be consumed either; ask again next pass.
            None => 0,
        }
    };
    // The two counts are read one after the other, not at one instant: a
    // message taken by a worker (its job not yet claimed) or a job
    // published between them looks like a lost message for one pass. A
    // message really gone stays missing: only what two passes in a row
    // found missing is re-enqueued.
    let missing = seen_missing.min(queue.last_missing);
    queue.last_missing = seen_missing;
    let reaped = syncway_store::jobs::reap(
        &mut client,
        grace,
        options.requeue_after,
        context.retry.max_attempts,
        missing,
    )
    .await?;
    if reaped.requeued > 0 {
        context.relay_wake.notify_one();
    }
    release_waiting(context, options, &mut client).await?;
    adopt_tasks(context, &mut client).await?;
    Ok(reaped)
}

/// Bulk tasks nobody has worked on for this long are taken over: the API
/// process that ran them died or hung.
const QUIET_TASK: Duration = Duration::from_secs(30);
/// Items a bulk task acts on per transaction.
const TASK_BATCH: i64 = 200;

/// Works through the bulk tasks whose process went quiet.
async fn adopt_tasks(
    context: &Context,
    client: &mut deadpool_postgres::Object,
) -> Result<(), StoreError> {
    for task_id in syncway_store::tasks::adopt_quiet(&*client, QUIET_TASK).await? {
        tracing::warn!(%task_id, "took over a bulk task nobody was working on");
        while syncway_store::tasks::work(client, task_id, TASK_BATCH, None).await? {
            context.relay_wake.notify_one();
        }
        context.relay_wake.notify_one();
    }
    Ok(())
}

/// Lets held jobs go whose hold is over.
async fn release_waiting(
    context: &Context,
    options: &Options,
    client: &mut deadpool_postgres::Object,
) -> Result<(), StoreError> {
    loop {
        let released = syncway_store::jobs::release_unpaused(client, RELEASE_BATCH).await?;
        if released.is_empty() {
            break;
        }
        context.relay_wake.notify_one();
        tracing::info!(
            released = released.len(),
            "reaper let go jobs a pause held: no pause holds them now"
        );
    }
    let caps = &options.limits.source_type_caps;
    if !caps.is_empty() {
        for (short_name, room) in syncway_store::jobs::source_type_room(&*client, caps).await? {
            if room > 0 {
                let released =
                    syncway_store::jobs::release_source_type(client, &short_name, room).await?;
                if !released.is_empty() {
                    context.relay_wake.notify_one();
                    tracing::info!(%short_name, released = released.len(), "reaper let held jobs go: their source type's cap had room");
                }
            }
        }
    }
    if let Some(cap) = options.limits.max_per_org {
        for (organization, room) in syncway_store::jobs::release_room(&*client, cap).await? {
            if room > 0 {
                let released =
                    syncway_store::jobs::release_held(client, organization, room).await?;
                if !released.is_empty() {
                    context.relay_wake.notify_one();
                    tracing::info!(%organization, released = released.len(), "reaper let held jobs go: their organization's share had room");
                }
            }
        }
    }
    Ok(())
}

fn report(context: &Context, reaped: &syncway_store::jobs::Reaped) {
    crate::metrics::add_counts(
        &context.metrics.reaped,
        "action",
        &[
            ("requeued", reaped.requeued),
            ("failed", reaped.failed),
            ("cancelled", reaped.cancelled),
        ],
    );
    for job_id in &reaped.requeued_jobs {
        tracing::info!(%job_id, "reaper re-enqueued a job nobody was working on");
    }
    if *reaped != syncway_store::jobs::Reaped::default() {
        tracing::info!(
            requeued = reaped.requeued,
            failed = reaped.failed,
            cancelled = reaped.cancelled,
            "reaper moved on jobs nobody was working on"
        );
    }
}

/// The reaper's view of the jobs queue: a connection of its own, made when
/// first needed and again after it failed.
#[derive(Default)]
struct QueueView {
    broker: Option<Broker>,
    /// How many messages the previous pass found missing.
    last_missing: i64,
}

impl QueueView {
    /// Messages ready in the jobs and manual-runs queues; `None` when the
    /// broker cannot say.
    async fn ready(&mut self, options: &Options) -> Option<u32> {
        if self
            .broker
            .as_ref()
            .is_none_or(|broker| !broker.is_connected())
        {
            self.close().await;
            let name = "syncway-reaper";
            match Broker::connect(&options.amqp_url, &options.namespace, name).await {
                Ok(broker) => self.broker = Some(broker),
                Err(error) => {
                    tracing::warn!(%error, "reaper cannot reach the broker; pending jobs are not checked this pass");
                    return None;
                }
            }
        }
        let broker = self.broker.as_ref()?;
        let mut ready = 0;
        let mut failed = None;
        for queue in [
            broker.topology().jobs_queue(),
            broker.topology().manual_queue(),
        ] {
            match broker.queue_depth(&queue).await {
                Ok(depth) => ready += depth.unwrap_or(0),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failed {
            tracing::warn!(%error, "reaper cannot read the queue's depth");
            self.close().await;
            return None;
        }
        Some(ready)
    }

    async fn close(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.close().await;
        }
    }
}
