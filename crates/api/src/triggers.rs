//! Triggers are batched: concurrent run requests share one statement (see
//! [`syncway_runtime::batcher`]) that authenticates each, inserts each job
//! with its outbox row, and answers each on its own.

use syncway_runtime::Batcher;
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
        async move { run_batch(&pool, requests).await }
    })
}

async fn run_batch(pool: &Pool, requests: Vec<TriggerRequest>) -> Vec<TriggerResult> {
    match run(pool, &requests).await {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(error) if requests.len() == 1 => vec![Err(error)],
        Err(error) => {
            // Give every request its own answer (and error), so that one
            // bad request cannot fail the others.
            tracing::warn!(error = ?error, size = requests.len(), "a batch of triggers failed; retrying them one by one");
            let mut results = Vec::with_capacity(requests.len());
            for request in &requests {
                results.push(run(pool, std::slice::from_ref(request)).await.and_then(
                    |mut results| {
                        results.pop().ok_or_else(|| {
                            StoreError::Corrupt("a trigger returned no result".into())
                        })
                    },
                ));
            }
            results
        }
    }
}

async fn run(pool: &Pool, requests: &[TriggerRequest]) -> Result<Vec<Triggered>, StoreError> {
    let client = pool.get().await?;
    jobs::trigger_many(&client, requests).await
}
