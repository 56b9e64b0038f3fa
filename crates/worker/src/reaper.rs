//! The reaper: every worker runs one. See [`syncway_store::jobs::reap`] for
//! what it moves on; rows another worker's reaper holds are skipped, so any
//! number can run at once.

use std::sync::Arc;
use std::time::Duration;

use crate::Context;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub interval: Duration,
    pub requeue_after: Duration,
}

pub async fn run(context: Arc<Context>, options: Options) {
    // A job's lease expired more than one lease length ago: its worker is
    // gone, and a redelivered message would have claimed it by now.
    let grace = Duration::from_secs_f64(context.lease_seconds);
    loop {
        // Spread the passes of many workers, never further apart than the
        // interval (the recovery bound counts on it).
        let pause = options.interval.mul_f64(rand::random_range(0.8..=1.0));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = context.stopping.cancelled() => return,
        }
        let reaped = async {
            let mut client = context.pool.get().await?;
            syncway_store::jobs::reap(
                &mut client,
                grace,
                options.requeue_after,
                context.retry.max_attempts,
            )
            .await
        }
        .await;
        match reaped {
            Ok(reaped) => {
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
                if reaped != syncway_store::jobs::Reaped::default() {
                    tracing::info!(
                        requeued = reaped.requeued,
                        failed = reaped.failed,
                        cancelled = reaped.cancelled,
                        "reaper moved on jobs nobody was working on"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "reaper pass failed; trying again next interval");
            }
        }
    }
}
