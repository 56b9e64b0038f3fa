//! Batch commits: a job's batch of entities, its counts, cursor and lease
//! (and, with an outcome, its end) in ONE statement, fenced by the lease.
//! The batches of several jobs share the statement ([`commit_many`]).

use bytes::BytesMut;
use deadpool_postgres::GenericClient;
use syncway_model::{ContentHash, ErrorCategory, JobStatus};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use uuid::Uuid;

use crate::StoreError;
use crate::job_row::{expect_rows, parse_status};

/// Entity counts a batch adds to its job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    pub failed: i64,
}

/// How a job ends.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    pub error: Option<String>,
    pub error_category: Option<ErrorCategory>,
    pub error_details: Option<serde_json::Value>,
}

/// One entity to store.
#[derive(Debug, Clone)]
pub struct EntityWrite {
    pub entity_id: String,
    /// See [`syncway_model::content_hash`].
    pub content_hash: ContentHash,
    /// The payload's canonical JSON, which the hash covers. Kept as text:
    /// it goes to the database as it is, without a second serialization.
    pub payload: String,
}

impl EntityWrite {
    /// Serializes and hashes the payload. Fails only for a payload JSON
    /// cannot represent (serde_json's values always can).
    pub fn new(entity_id: String, payload: &serde_json::Value) -> serde_json::Result<Self> {
        let (payload, content_hash) = syncway_model::canonical_json(payload)?;
        Ok(EntityWrite {
            entity_id,
            content_hash,
            payload,
        })
    }
}

/// JSON text bound as a `json` (or `jsonb`) parameter as it is.
#[derive(Debug)]
pub(super) struct JsonText<'a>(pub &'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary format: a version byte, then the text.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// A batch to commit: entities to upsert (ids unique), ids the source
/// reported deleted (disjoint from the entities), entities that failed, and
/// the cursor that covers it all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch<'a> {
    pub entities: &'a [EntityWrite],
    pub deleted: &'a [String],
    pub failed: i64,
    pub cursor: Option<&'a serde_json::Value>,
    /// Full syncs remember what each batch saw (its run's `full_sync_seen`
    /// rows), and when they complete, delete every entity of the connection
    /// their run did not see (what the source no longer has).
    pub full_sync: bool,
    /// With a completing full sync: how many distinct ids its run saw, this
    /// batch included, when the worker knows it (it reported no deletions
    /// and no id twice). When as many entities are stored, the run saw them
    /// all, and the comparison that finds the unseen ones is skipped.
    pub seen_total: Option<i64>,
    /// The mass-deletion guard's floor: with at least this many entities
    /// stored, a completing full sync that would delete more than its
    /// connection's `max_delete_fraction` of them fails instead (error
    /// details `kind = "mass_deletion"`) and deletes nothing, unless its
    /// job allows mass deletion. `None`: no guard.
    pub mass_delete_min_entities: Option<i64>,
}

/// One job's share of a [`commit_many`].
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    pub job_id: Uuid,
    pub source_connection_id: Uuid,
    /// The run's claim (its lease token, [`super::ClaimedJob::lease`]): the
    /// fence of the commit, and the run whose seen sets a full sync's
    /// deletions count (a resumed full sync reads the source from the start
    /// again, and only what this run saw counts).
    pub run_id: Uuid,
    /// The commit's number in its run, from 1: it applies only after the
    /// commit before it, and once (a replay writes nothing).
    pub seq: i64,
    pub batch: Batch<'a>,
    /// With an outcome, the job ends in the same transaction.
    pub outcome: Option<&'a Outcome>,
}

/// Commits a batch in ONE statement (hence one transaction): counts its
/// entities by content hash against what is stored, upserts those that
/// changed, deletes what the batch (or a completing full sync) says is gone,
/// adds the counts to the job, stores the cursor, renews the lease and, with
/// `outcome`, ends the job and records a credential failure on the
/// connection. The job update is the fence: when the run's claim no longer
/// holds the job, nothing at all is written and `None` is returned. A
/// commit applied already (sent again after a lost connection) writes
/// nothing and answers the job's status with no counts.
pub async fn commit_batch(
    client: &impl GenericClient,
    lease_seconds: f64,
    commit: &Commit<'_>,
) -> Result<Option<(JobStatus, Counts)>, StoreError> {
    commit_many(client, lease_seconds, std::slice::from_ref(commit))
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("a commit returned no result".into()))
}

/// One job's part of the commit statement: its commit, with (for
/// [`super::bulk`]) only some of its entities to write.
#[derive(Debug, Clone, Copy)]
pub(super) struct Part<'a> {
    pub commit: &'a Commit<'a>,
    /// The entities the statement writes and counts; `None`: all of the
    /// batch's.
    pub writes: Option<&'a [&'a EntityWrite]>,
    /// Ids a full sync saw besides `writes` (unchanged, or copied).
    pub seen: &'a [&'a str],
    /// Entities the caller's transaction inserted already (counted as
    /// inserted).
    pub copied: i64,
}

/// [`commit_batch`] for the batches of several jobs (at most one commit per
/// job) in ONE statement and transaction; each job is fenced on its own and
/// results come in the order of `commits`.
pub async fn commit_many(
    client: &impl GenericClient,
    lease_seconds: f64,
    commits: &[Commit<'_>],
) -> Result<Vec<Option<(JobStatus, Counts)>>, StoreError> {
    let parts: Vec<Part<'_>> = commits
        .iter()
        .map(|commit| Part {
            commit,
            writes: None,
            seen: &[],
            copied: 0,
        })
        .collect();
    commit_parts(client, lease_seconds, &parts).await
}

/// [`commit_many`] of [`Part`]s.
pub(super) async fn commit_parts(
    client: &impl GenericClient,
    lease_seconds: f64,
    commits: &[Part<'_>],
) -> Result<Vec<Option<(JobStatus, Counts)>>, StoreError> {
    // Per job (n = its place in `commits`).
    let mut n = Vec::with_capacity(commits.len());
    let mut job_ids = Vec::with_capacity(commits.len());
    let mut connections = Vec::with_capacity(commits.len());
    let mut delete_unseen = Vec::with_capacity(commits.len());
    let mut failed = Vec::with_capacity(commits.len());
    let mut statuses: Vec<Option<&str>> = Vec::with_capacity(commits.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(commits.len());
    let mut categories: Vec<Option<&str>> = Vec::with_capacity(commits.len());
    let mut details: Vec<Option<&serde_json::Value>> = Vec::with_capacity(commits.len());
    let mut cursors: Vec<Option<&serde_json::Value>> = Vec::with_capacity(commits.len());
    let mut runs: Vec<Option<Uuid>> = Vec::with_capacity(commits.len());
    let mut copied = Vec::with_capacity(commits.len());
    let mut seen_totals = Vec::with_capacity(commits.len());
    let mut tokens = Vec::with_capacity(commits.len());
    let mut seqs = Vec::with_capacity(commits.len());
    let mut mass_delete_mins = Vec::with_capacity(commits.len());
    // Per entity and per deleted id: the job's n.
    let mut entity_n = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    let mut hashes: Vec<&[u8]> = Vec::new();
    let mut payloads: Vec<JsonText<'_>> = Vec::new();
    let mut deleted_n = Vec::new();
    let mut deleted: Vec<&str> = Vec::new();
    let mut seen_n = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (at, part) in commits.iter().enumerate() {
        let at = i32::try_from(at)
            .map_err(|_| StoreError::Corrupt("too many commits in one batch".into()))?;
        let commit = part.commit;
        let batch = &commit.batch;
        let outcome = commit.outcome;
        n.push(at);
        job_ids.push(commit.job_id);
        connections.push(commit.source_connection_id);
        delete_unseen
            .push(batch.full_sync && outcome.is_some_and(|o| o.status == JobStatus::Completed));
        failed.push(batch.failed);
        statuses.push(outcome.map(|o| o.status.as_str()));
        errors.push(outcome.and_then(|o| o.error.as_deref()));
        categories.push(outcome.and_then(|o| o.error_category.map(ErrorCategory::as_str)));
        details.push(outcome.and_then(|o| o.error_details.as_ref()));
        cursors.push(batch.cursor);
        runs.push(batch.full_sync.then_some(commit.run_id));
        copied.push(part.copied);
        seen_totals.push(batch.seen_total);
        tokens.push(commit.run_id);
        seqs.push(commit.seq);
        mass_delete_mins.push(batch.mass_delete_min_entities);
        let writes: Box<dyn Iterator<Item = &EntityWrite>> = match part.writes {
            Some(writes) => Box::new(writes.iter().copied()),
            None => Box::new(batch.entities.iter()),
        };
        for entity in writes {
            entity_n.push(at);
            ids.push(&entity.entity_id);
            hashes.push(&entity.content_hash[..]);
            payloads.push(JsonText(&entity.payload));
        }
        for id in batch.deleted {
            deleted_n.push(at);
            deleted.push(id);
        }
        if batch.full_sync {
            for id in part.seen {
                seen_n.push(at);
                seen.push(id);
            }
        }
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 25] = [
        &tokens,
        &lease_seconds,
        &n,
        &job_ids,
        &connections,
        &delete_unseen,
        &failed,
        &statuses,
        &errors,
        &categories,
        &details,
        &cursors,
        &entity_n,
        &ids,
        &hashes,
        &payloads,
        &deleted_n,
        &deleted,
        &runs,
        &copied,
        &seen_n,
        &seen,
        &seen_totals,
        &seqs,
        &mass_delete_mins,
    ];
    // Small commits (the common case: many jobs of few entities) reuse the
    // connection's prepared statement and its cached plan. A large one is
    // parsed and planned afresh (an unnamed statement): within one large
    // sync the entity table grows from nothing to millions of rows, and a
    // plan cached while it was small would keep scanning all of it for
    // every batch (measured: 75 s instead of 5 s for 200,000 entities in
    // batches of 5,000). Planning costs little beside such a batch.
    let rows = if ids.len() + deleted.len() + seen.len() >= FRESH_PLAN_ENTITIES {
        client.query(COMMIT_MANY, &params).await?
    } else {
        let statement = client.prepare_cached(COMMIT_MANY).await?;
        client.query(&statement, &params).await?
    };

    expect_rows(&rows, commits.len(), "a commit")?;
    rows.iter()
        .zip(commits)
        .map(|(row, commit)| {
            let Some(status) = row.try_get::<_, Option<&str>>("status")? else {
                return Ok(None);
            };
            if row.try_get("replayed")? {
                // Applied by an earlier send of the same commit: its counts
                // are in the job already.
                return Ok(Some((parse_status(status)?, Counts::default())));
            }
            let counts = Counts {
                inserted: row.try_get("inserted")?,
                updated: row.try_get("updated")?,
                deleted: row.try_get("deleted")?,
                failed: commit.commit.batch.failed,
            };
            Ok(Some((parse_status(status)?, counts)))
        })
        .collect()
}

/// Commits with at least this many entities are planned afresh (see
/// [`commit_many`]).
pub const FRESH_PLAN_ENTITIES: usize = 256;

const COMMIT_MANY: &str = include_str!("commit_many.sql");
