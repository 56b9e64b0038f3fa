//! Triggers are batched: concurrent run requests share one statement (see
//! [`syncway_store::batcher`]) that authenticates each, inserts each job
//! with its outbox row, and answers each on its own.

use std::time::Duration;

use syncway_store::jobs::{self, TriggerRequest, Triggered};
use syncway_store::{Batcher, Shape, spawn_on_pool};
use syncway_store::{Pool, StoreError};

pub type TriggerResult = Result<Triggered, StoreError>;
pub type TriggerBatcher = Batcher<TriggerRequest, TriggerResult>;

/// Batches in flight at once; each holds one pool connection.
const LANES: usize = 4;
/// The largest batch one statement takes.
const MAX_BATCH: usize = 64;
/// Under load, how long a run request waits for others to share its
/// statement (see [`Shape::linger`]). At 16 clients, one millisecond took
/// batches from about 3 requests to about 10 and halved the statement's
/// Postgres CPU per job, with trigger p99 unchanged (README, Performance,
/// issue 30). A lone request after a lone request never waits.
const LINGER: Duration = Duration::from_millis(1);

pub fn spawn(pool: Pool) -> TriggerBatcher {
    spawn_on_pool(
        "triggers",
        Shape {
            lanes: LANES,
            max_batch: MAX_BATCH,
            linger: LINGER,
        },
        pool,
        |client, requests| async move { jobs::trigger_many(&client, &requests).await },
    )
}
