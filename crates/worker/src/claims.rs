//! Claims are batched: the deliveries that arrive while a claim statement
//! runs are claimed together by the next one (see
//! [`syncway_runtime::batcher`]).

use syncway_runtime::{Batcher, all_or_each};
use syncway_store::jobs::{self, Claim};
use syncway_store::{Pool, StoreError};
use uuid::Uuid;

pub type ClaimBatcher = Batcher<Uuid, Result<Claim, StoreError>>;

/// Claim statements in flight at once; each holds one pool connection.
const LANES: usize = 2;

pub fn spawn(pool: Pool, owner: String, lease_seconds: f64, max_batch: usize) -> ClaimBatcher {
    Batcher::spawn("claim", LANES, max_batch, move |job_ids| {
        let pool = pool.clone();
        let owner = owner.clone();
        async move {
            let run = |job_ids: Vec<Uuid>| {
                let pool = pool.clone();
                let owner = owner.clone();
                async move {
                    let client = pool.get().await?;
                    jobs::claim_many(&client, &job_ids, &owner, lease_seconds).await
                }
            };
            all_or_each("claims", job_ids, run, || {
                StoreError::Corrupt("a claim batch returned too few results".into())
            })
            .await
        }
    })
}
