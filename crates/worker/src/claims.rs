//! Claims are batched: the deliveries that arrive while a claim statement
//! runs are claimed together by the next one (see
//! [`syncway_store::batcher`]).

use std::sync::Arc;
use std::time::Duration;

use syncway_store::jobs::{self, Claim, ClaimLimits};
use syncway_store::{Batcher, Shape, spawn_on_pool};
use syncway_store::{Pool, StoreError};
use uuid::Uuid;

pub type ClaimBatcher = Batcher<Uuid, Result<Claim, StoreError>>;

/// Claim statements in flight at once; each holds one pool connection.
/// One: whatever becomes ready while a statement runs goes into the next,
/// so batches are as large as the load makes them. A second lane took the
/// one or two items queued behind the first and halved the batches: a
/// statement's fixed cost (planning, executor start, the CTEs) was paid
/// twice as often, for 25-30% more Postgres CPU per job (README,
/// Performance, issue 30).
const LANES: usize = 1;
/// Under load, how long a batch's first delivery waits for others to join
/// it (see [`Shape::linger`]). At 1 worker x 16, one millisecond took
/// batches from about 4 jobs to about 12, for a quarter less Postgres CPU
/// per job (README, Performance, issue 30); an idle worker never waits.
const LINGER: Duration = Duration::from_millis(1);

/// `limits`: the fair share and the caps per source type (`limits.*`).
pub fn spawn(
    pool: Pool,
    owner: String,
    lease_seconds: f64,
    max_batch: usize,
    limits: ClaimLimits,
) -> ClaimBatcher {
    let owner: Arc<str> = owner.into();
    let limits = Arc::new(limits);
    spawn_on_pool(
        "claims",
        Shape {
            lanes: LANES,
            max_batch,
            linger: LINGER,
        },
        pool,
        move |mut client, job_ids| {
            let owner = owner.clone();
            let limits = limits.clone();
            async move {
                if limits.is_unlimited() {
                    jobs::claim_many(&client, &job_ids, &owner, lease_seconds).await
                } else {
                    jobs::claim_many_limited(&mut client, &job_ids, &owner, lease_seconds, &limits)
                        .await
                }
            }
        },
    )
}
