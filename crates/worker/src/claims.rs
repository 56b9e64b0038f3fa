//! Claims are batched: the deliveries that arrive while a claim statement
//! runs are claimed together by the next one (see
//! [`syncway_store::batcher`]).

use std::sync::Arc;

use syncway_store::jobs::{self, Claim, ClaimLimits};
use syncway_store::{Batcher, Shape, spawn_on_pool};
use syncway_store::{Pool, StoreError};
use uuid::Uuid;

pub type ClaimBatcher = Batcher<Uuid, Result<Claim, StoreError>>;

/// `limits`: the fair share and the caps per source type (`limits.*`).
pub fn spawn(
    pool: Pool,
    owner: String,
    lease_seconds: f64,
    shape: Shape,
    limits: ClaimLimits,
) -> ClaimBatcher {
    let owner: Arc<str> = owner.into();
    let limits = Arc::new(limits);
    spawn_on_pool("claims", shape, pool, move |mut client, job_ids| {
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
    })
}
