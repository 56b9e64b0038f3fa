//! Batch commits are batched across jobs: the commits that become ready
//! while a commit statement runs go together in the next one (see
//! [`syncway_store::batcher`]). Each job is still fenced, counted and
//! written on its own inside that statement ([`jobs::commit_many`]). A
//! large batch has nothing to gain from company and is written on its own
//! ([`jobs::commit_bulk`], [`commit_large`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use syncway_model::JobStatus;
use syncway_store::jobs::{self, Batch, Commit, Counts, Outcome, Probe};
use syncway_store::{Batcher, Shape, spawn_on_pool};
use syncway_store::{Pool, StoreError};
use uuid::Uuid;

use crate::prefetch::PreparedBatch;

/// One job's batch and/or outcome, shared between the attempts to write it.
#[derive(Debug)]
pub struct PendingCommit {
    pub job_id: Uuid,
    pub source_connection_id: Uuid,
    /// This claim of the job (see [`Commit::run_id`]).
    pub run_id: Uuid,
    /// The commit's number in its run (see [`Commit::seq`]).
    pub seq: i64,
    pub full_sync: bool,
    /// See [`syncway_store::jobs::Batch::seen_total`].
    pub seen_total: Option<i64>,
    /// See [`syncway_store::jobs::Batch::mass_delete_min_entities`].
    pub mass_delete_min_entities: Option<i64>,
    pub batch: PreparedBatch,
    pub outcome: Option<Outcome>,
}

impl PendingCommit {
    fn as_commit(&self) -> Commit<'_> {
        Commit {
            job_id: self.job_id,
            source_connection_id: self.source_connection_id,
            run_id: self.run_id,
            seq: self.seq,
            batch: Batch {
                entities: &self.batch.entities,
                deleted: &self.batch.deleted,
                failed: self.batch.failed,
                cursor: self.batch.cursor.as_ref(),
                full_sync: self.full_sync,
                seen_total: self.seen_total,
                mass_delete_min_entities: self.mass_delete_min_entities,
            },
            outcome: self.outcome.as_ref(),
        }
    }

    /// The bytes of the payloads it writes.
    fn payload_bytes(&self) -> usize {
        self.batch.entities.iter().map(|e| e.payload.len()).sum()
    }

    /// Large enough for [`commit_large`].
    pub fn is_large(&self) -> bool {
        self.batch.entities.len() >= jobs::BULK_ENTITIES
    }
}

/// Writes a large batch in a transaction of its own. `assume_new`: the
/// run has found nothing of its connection stored so far (see
/// [`Probe::Skip`]); cleared when a batch proves otherwise.
pub async fn commit_large(
    pool: &Pool,
    lease_seconds: f64,
    commit: &PendingCommit,
    assume_new: &AtomicBool,
) -> CommitResult {
    let mut client = pool.get().await?;
    let probe = if assume_new.load(Ordering::Relaxed) {
        Probe::Skip
    } else {
        Probe::First
    };
    let bulk = jobs::commit_bulk(&mut client, lease_seconds, &commit.as_commit(), probe).await;
    if commit.payload_bytes() >= RETAINED_BYTES {
        drop(deadpool_postgres::Object::take(client));
    }
    let bulk = bulk?;
    if bulk.found_stored {
        assume_new.store(false, Ordering::Relaxed);
    }
    Ok(bulk.written)
}

pub type CommitResult = Result<Option<(JobStatus, Counts)>, StoreError>;
pub type CommitBatcher = Batcher<Arc<PendingCommit>, CommitResult>;

/// A connection that sent a statement with this many bytes of payloads is
/// closed afterwards rather than returned to the pool: its write buffer
/// keeps the size of the largest message it ever sent, and a pool of such
/// connections would hold that much each, outside the memory budget.
const RETAINED_BYTES: usize = 1 << 20;

pub fn spawn(pool: Pool, lease_seconds: f64, shape: Shape) -> CommitBatcher {
    spawn_on_pool(
        "commits",
        shape,
        pool,
        move |client, commits: Vec<Arc<PendingCommit>>| async move {
            let bytes: usize = commits.iter().map(|commit| commit.payload_bytes()).sum();
            let parts: Vec<Commit<'_>> = commits.iter().map(|commit| commit.as_commit()).collect();
            let written = jobs::commit_many(&client, lease_seconds, &parts).await;
            if bytes >= RETAINED_BYTES {
                drop(deadpool_postgres::Object::take(client));
            }
            written
        },
    )
}
