//! The worker registry: this process records itself in Postgres (id, host,
//! version, concurrency), refreshes `last_seen` and its jobs in flight on a
//! heartbeat, prunes workers long gone, and deletes its row on a clean
//! shutdown. Readers show a worker unseen for three heartbeats as gone.

use std::sync::Arc;
use std::time::Duration;

use syncway_store::ops::{self, WorkerRow};
use tokio_util::sync::CancellationToken;

use crate::Context;

/// Workers unseen this long are forgotten.
const PRUNE_AFTER: Duration = Duration::from_secs(3600);

pub(crate) struct Registration {
    pub row: WorkerRow,
    pub heartbeat: Duration,
}

/// Heartbeats until `stopping`, then deregisters.
pub(crate) async fn run(
    context: Arc<Context>,
    mut registration: Registration,
    stopping: CancellationToken,
) {
    loop {
        registration.row.jobs_in_flight =
            i32::try_from(context.metrics.jobs_running.get()).unwrap_or(i32::MAX);
        let beat = async {
            let client = context.pool.get().await?;
            ops::register_worker(
                &client,
                &registration.row,
                registration.heartbeat.as_secs_f64(),
            )
            .await?;
            ops::prune_workers(&client, PRUNE_AFTER).await?;
            Ok::<_, syncway_store::StoreError>(())
        }
        .await;
        if let Err(error) = beat {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "worker registry heartbeat failed");
        }
        tokio::select! {
            () = tokio::time::sleep(registration.heartbeat) => {}
            () = stopping.cancelled() => break,
        }
    }
}

/// Removes this worker's row (a clean shutdown).
pub(crate) async fn deregister(context: &Context) {
    let removed = async {
        let client = context.pool.get().await?;
        ops::deregister_worker(&client, &context.worker_id).await
    }
    .await;
    if let Err(error) = removed {
        tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "could not remove this worker from the registry");
    }
}
