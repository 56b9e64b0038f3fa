//! The retention loop: every worker runs one; one process at a time does
//! the work (each batch takes the retention lock, see
//! [`syncway_store::retention`]). It removes deleted connections'
//! leftovers first (they can be large and nothing reads them), then
//! finished jobs past `job_days`, then audit entries and tombstones. While
//! a step finds more, the next batches follow after a pause of
//! [`BUSY_PAUSE_FACTOR`] times the last pass's length (the loop takes at
//! most a fifth of the time, whatever the database's speed, so that the
//! load it adds stays small beside the requests it overlaps; a batch of
//! [`BATCH`] rows per pass still removes far more than a busy deployment
//! adds); when none does, the loop sleeps for the interval.

use std::sync::Arc;
use std::time::Duration;

use syncway_store::StoreError;
use syncway_store::retention::{self, Removed, Rules, SweepPosition};

use crate::Context;
use crate::metrics::add_counts;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub rules: Rules,
    /// The pause when a pass found nothing more to do.
    pub interval: Duration,
}

/// While there is more to remove, the pause after a pass is this many
/// times the pass's length: the loop works a fifth of the time.
const BUSY_PAUSE_FACTOR: u32 = 4;

/// Rows per transaction.
pub const BATCH: i64 = syncway_store::retention::BATCH_ROWS;

pub async fn run(context: Arc<Context>, options: Options) {
    let mut sweep: SweepPosition = None;
    loop {
        let started = std::time::Instant::now();
        if let Err(error) = crate::releases::pass(&context).await {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "source releases failed; trying again next interval");
        }
        let busy = match pass(&context, options.rules, &mut sweep).await {
            Ok(busy) => busy,
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "retention pass failed; trying again next interval");
                false
            }
        };
        let pause = if busy {
            started.elapsed() * BUSY_PAUSE_FACTOR
        } else {
            options.interval.mul_f64(rand::random_range(0.8..=1.0))
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = context.stopping.cancelled() => break,
        }
    }
}

/// One batch of each step; true when any found more to do.
async fn pass(
    context: &Context,
    rules: Rules,
    sweep: &mut SweepPosition,
) -> Result<bool, StoreError> {
    let mut client = context.pool.get().await?;
    let mut busy = false;
    let Some(purged) = retention::purge_deleted_connection(&mut client, rules).await? else {
        // Another process holds the lock: it does the work.
        return Ok(false);
    };
    busy |= counted(context, &purged);
    if let Some((removed, next)) = retention::remove_old_jobs(&mut client, rules, *sweep).await? {
        busy |= counted(context, &removed);
        *sweep = next;
    }
    if let Some(removed) = retention::remove_old_entries(&mut client, rules).await? {
        busy |= counted(context, &removed);
    }
    Ok(busy)
}

fn counted(context: &Context, removed: &Removed) -> bool {
    add_counts(&context.metrics.retention_removed, "table", &removed.rows);
    if removed.total() > 0 {
        tracing::debug!(rows = removed.total(), "retention removed a batch");
    }
    removed.more
}
