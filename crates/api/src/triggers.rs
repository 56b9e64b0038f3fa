//! Triggers are batched: concurrent run requests share one statement (see
//! [`syncway_store::batcher`]) that authenticates each, inserts each job
//! with its outbox row, and answers each on its own.

use syncway_store::jobs::{self, TriggerRequest, Triggered};
use syncway_store::{Batcher, spawn_on_pool};
use syncway_store::{Pool, StoreError};

pub type TriggerResult = Result<Triggered, StoreError>;
pub type TriggerBatcher = Batcher<TriggerRequest, TriggerResult>;

/// Batches in flight at once; each holds one pool connection.
const LANES: usize = 4;
/// The largest batch one statement takes.
const MAX_BATCH: usize = 64;

pub fn spawn(pool: Pool) -> TriggerBatcher {
    spawn_on_pool(
        "triggers",
        LANES,
        MAX_BATCH,
        pool,
        |client, requests| async move { jobs::trigger_many(&client, &requests).await },
    )
}
