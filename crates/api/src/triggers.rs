//! Triggers are batched: concurrent run requests share one statement (see
//! [`syncway_runtime::batcher`]) that authenticates each, inserts each job
//! with its outbox row, and answers each on its own.

use syncway_runtime::{Batcher, all_or_each};
use syncway_store::jobs::{self, TriggerRequest, Triggered};
use syncway_store::{Pool, StoreError};

pub type TriggerResult = Result<Triggered, StoreError>;
pub type TriggerBatcher = Batcher<TriggerRequest, TriggerResult>;

/// Batches in flight at once; each holds one pool connection.
const LANES: usize = 4;
/// The largest batch one statement takes.
const MAX_BATCH: usize = 64;

pub fn spawn(pool: Pool) -> TriggerBatcher {
    Batcher::spawn("trigger", LANES, MAX_BATCH, move |requests| {
        let pool = pool.clone();
        async move {
            let run = |requests: Vec<TriggerRequest>| {
                let pool = pool.clone();
                async move {
                    let client = pool.get().await?;
                    jobs::trigger_many(&client, &requests).await
                }
            };
            all_or_each("triggers", requests, run, || {
                StoreError::Corrupt("a trigger batch returned too few results".into())
            })
            .await
        }
    })
}
