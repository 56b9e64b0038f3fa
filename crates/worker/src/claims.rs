//! Claims are batched: the deliveries that arrive while a claim statement
//! runs are claimed together by the next one (see
//! [`syncway_store::batcher`]).

use std::sync::Arc;

use syncway_store::jobs::{self, Claim};
use syncway_store::{Batcher, spawn_on_pool};
use syncway_store::{Pool, StoreError};
use uuid::Uuid;

pub type ClaimBatcher = Batcher<Uuid, Result<Claim, StoreError>>;

/// Claim statements in flight at once; each holds one pool connection.
const LANES: usize = 2;

/// `max_per_org`: the fair share (`limits.max_running_jobs_per_org`).
pub fn spawn(
    pool: Pool,
    owner: String,
    lease_seconds: f64,
    max_batch: usize,
    max_per_org: Option<i32>,
) -> ClaimBatcher {
    let owner: Arc<str> = owner.into();
    spawn_on_pool(
        "claims",
        LANES,
        max_batch,
        pool,
        move |mut client, job_ids| {
            let owner = owner.clone();
            async move {
                match max_per_org {
                    None => jobs::claim_many(&client, &job_ids, &owner, lease_seconds).await,
                    Some(limit) => {
                        jobs::claim_many_fairly(&mut client, &job_ids, &owner, lease_seconds, limit)
                            .await
                    }
                }
            }
        },
    )
}
