//! What full syncs saw (migration V12) and large batches
//! (`jobs::commit_bulk`), at the store: deletions count only what the
//! completing run saw, unchanged entities are not written at all, new ones
//! are copied, and a wrong guess that nothing is stored is caught.

use serde_json::json;
use syncway_model::JobStatus;
use syncway_store::jobs::{
    self, Batch, Bulk, Claim, Commit, Counts, EntityWrite, Outcome, Probe, claim_many, commit_bulk,
    commit_many,
};
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv};

const OWNER: &str = "seen-sets-test";

fn entity(id: &str, version: i64) -> EntityWrite {
    EntityWrite::new(id.to_string(), &json!({ "id": id, "v": version }))
        .expect("a JSON value serializes")
}

fn entities(prefix: &str, range: std::ops::Range<usize>, version: i64) -> Vec<EntityWrite> {
    range
        .map(|i| entity(&format!("{prefix}{i:04}"), version))
        .collect()
}

fn completed() -> Outcome {
    Outcome {
        status: JobStatus::Completed,
        error: None,
        error_category: None,
        error_details: None,
    }
}

fn counts(inserted: i64, updated: i64, deleted: i64) -> Counts {
    Counts {
        inserted,
        updated,
        deleted,
        failed: 0,
    }
}

struct Fixture {
    app: TestApp,
    db: deadpool_postgres::Object,
    connection: Uuid,
}

impl Fixture {
    async fn new() -> Self {
        let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
        let db = app.db().await;
        let connection = app.stub_connection(json!({}), false).await;
        Fixture {
            app,
            db,
            connection,
        }
    }

    /// Triggers a job on the connection and claims it as [`OWNER`]:
    /// (job, the claim's lease token).
    async fn claimed_job(&self) -> (Uuid, Uuid) {
        let job = self.app.run(self.connection, true).await;
        (job, self.claim(job).await)
    }

    async fn claim(&self, job: Uuid) -> Uuid {
        let claimed = claim_many(&self.db, &[job], OWNER, 30.0)
            .await
            .expect("the claim runs");
        match &claimed[..] {
            [Claim::Claimed(claimed)] => claimed.lease,
            other => panic!("not claimed: {other:?}"),
        }
    }

    /// The job's lease runs out and it is claimed again (taken over): the
    /// new claim's lease token.
    async fn take_over(&self, job: Uuid) -> Uuid {
        self.db
            .execute(
                "UPDATE sync_jobs SET lease_expires_at = now() - interval '1 second'
                 WHERE id = $1",
                &[&job],
            )
            .await
            .expect("the lease runs out");
        self.claim(job).await
    }

    fn commit<'a>(
        &self,
        job: Uuid,
        run: Uuid,
        seq: i64,
        entities: &'a [EntityWrite],
        outcome: Option<&'a Outcome>,
        seen_total: Option<i64>,
    ) -> Commit<'a> {
        Commit {
            job_id: job,
            source_connection_id: self.connection,
            run_id: run,
            seq,
            batch: Batch {
                entities,
                full_sync: true,
                seen_total,
                mass_delete_min_entities: None,
                ..Batch::default()
            },
            outcome,
        }
    }

    async fn bulk(&mut self, commit: &Commit<'_>, probe: Probe) -> Bulk {
        commit_bulk(&mut self.db, 30.0, commit, probe)
            .await
            .expect("the bulk commit runs")
    }

    /// Stored entity ids with the transaction that wrote each row version.
    async fn rows(&self) -> Vec<(String, String)> {
        self.db
            .query(
                "SELECT entity_id, xmin::text FROM entities
                 WHERE source_connection_id = $1 ORDER BY entity_id",
                &[&self.connection],
            )
            .await
            .expect("entities are readable")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    async fn stored_count(&self) -> i64 {
        self.db
            .query_one(
                "SELECT entity_count FROM cursors WHERE source_connection_id = $1",
                &[&self.connection],
            )
            .await
            .expect("the cursor row exists")
            .get(0)
    }

    async fn seen_rows(&self) -> i64 {
        self.db
            .query_one("SELECT count(*) FROM full_sync_seen", &[])
            .await
            .expect("full_sync_seen is readable")
            .get(0)
    }
}

/// A resumed full sync reads the source from the start again: what an
/// earlier run saw does not keep an entity the completing run did not see.
#[tokio::test]
async fn a_completing_full_sync_deletes_what_its_own_run_did_not_see() {
    let fixture = Fixture::new().await;
    let (job, run_a) = fixture.claimed_job().await;
    let first = entities("e", 0..5, 1);
    let written = commit_many(
        &fixture.db,
        30.0,
        &[fixture.commit(job, run_a, 1, &first, None, None)],
    )
    .await
    .expect("run A's batch commits");
    assert_eq!(written, [Some((JobStatus::Running, counts(5, 0, 0)))]);
    assert_eq!(fixture.seen_rows().await, 1);

    // Run B (the job taken over) sees e0000 changed and e0001: the source
    // no longer has the other three, which run A saw.
    let run_b = fixture.take_over(job).await;
    let second = [entity("e0000", 2), entity("e0001", 1)];
    let done = completed();
    let written = commit_many(
        &fixture.db,
        30.0,
        &[fixture.commit(job, run_b, 1, &second, Some(&done), None)],
    )
    .await
    .expect("run B's batch commits");
    assert_eq!(written, [Some((JobStatus::Completed, counts(0, 1, 3)))]);
    let ids: Vec<String> = fixture.rows().await.into_iter().map(|r| r.0).collect();
    assert_eq!(ids, ["e0000", "e0001"]);
    assert_eq!(fixture.stored_count().await, 2);
    // The ended job's seen rows (both runs') are gone with it.
    assert_eq!(fixture.seen_rows().await, 0);
}

#[tokio::test]
async fn large_batches_copy_new_entities_and_leave_unchanged_rows_untouched() {
    let mut fixture = Fixture::new().await;
    let done = completed();

    // An empty connection: all 600 copied without a probe.
    let (job, lease) = fixture.claimed_job().await;
    let all = entities("s", 0..600, 1);
    let bulk = fixture
        .bulk(
            &fixture.commit(job, lease, 1, &all, Some(&done), Some(600)),
            Probe::Skip,
        )
        .await;
    assert_eq!(
        bulk.written,
        Some((JobStatus::Completed, counts(600, 0, 0)))
    );
    assert!(!bulk.found_stored);
    let before = fixture.rows().await;

    // Guessed wrong: the batch is all stored, 100 of it changed. The COPY
    // fails on the key, leaves nothing, and the batch is probed instead.
    let (job, run) = fixture.claimed_job().await;
    let mut first = entities("s", 0..300, 1);
    first[..100].clone_from_slice(&entities("s", 0..100, 2));
    let bulk = fixture
        .bulk(
            &fixture.commit(job, run, 1, &first, None, None),
            Probe::Skip,
        )
        .await;
    assert_eq!(bulk.written, Some((JobStatus::Running, counts(0, 100, 0))));
    assert!(bulk.found_stored);
    let after = fixture.rows().await;
    for (at, (before, after)) in before.iter().zip(&after).enumerate() {
        assert_eq!(before.0, after.0);
        // Changed rows were rewritten; unchanged ones not even locked.
        assert_eq!(before.1 != after.1, at < 100, "{before:?} {after:?}");
    }

    // The last batch: 100 unchanged, 300 new. The run saw 700 ids and 900
    // will be stored, so the comparison runs and finds the 200 unseen.
    let mut last = entities("s", 300..400, 1);
    last.extend(entities("n", 0..300, 1));
    let bulk = fixture
        .bulk(
            &fixture.commit(job, run, 2, &last, Some(&done), Some(700)),
            Probe::First,
        )
        .await;
    assert_eq!(
        bulk.written,
        Some((JobStatus::Completed, counts(300, 0, 200)))
    );
    assert_eq!(fixture.stored_count().await, 700);
    assert_eq!(fixture.rows().await.len(), 700);
    assert_eq!(fixture.seen_rows().await, 0);

    // Nothing changed: nothing is written, and as many distinct ids as are
    // stored were seen, so nothing is deleted.
    let before = fixture.rows().await;
    let (job, lease) = fixture.claimed_job().await;
    let mut everything = entities("s", 0..100, 2);
    everything.extend(entities("s", 100..400, 1));
    everything.extend(entities("n", 0..300, 1));
    let bulk = fixture
        .bulk(
            &fixture.commit(job, lease, 1, &everything, Some(&done), Some(700)),
            Probe::First,
        )
        .await;
    assert_eq!(bulk.written, Some((JobStatus::Completed, counts(0, 0, 0))));
    assert_eq!(fixture.rows().await, before);
}

#[tokio::test]
async fn a_large_batch_of_a_job_not_held_writes_nothing() {
    let mut fixture = Fixture::new().await;
    let (job, lease) = fixture.claimed_job().await;
    // Taken over: another claim of the same worker now holds it.
    fixture.take_over(job).await;
    let all = entities("s", 0..300, 1);
    for probe in [Probe::Skip, Probe::First] {
        let bulk = fixture
            .bulk(&fixture.commit(job, lease, 1, &all, None, None), probe)
            .await;
        assert!(bulk.written.is_none(), "{bulk:?}");
    }
    assert!(fixture.rows().await.is_empty());
    assert_eq!(fixture.seen_rows().await, 0);
}

/// A job ended without its worker's final commit (here: failed by hand, as
/// a cancel or the reaper would) leaves its seen rows to the reaper.
#[tokio::test]
async fn the_reaper_removes_what_ended_jobs_saw() {
    let mut fixture = Fixture::new().await;
    let (job, lease) = fixture.claimed_job().await;
    let some = entities("e", 0..3, 1);
    commit_many(
        &fixture.db,
        30.0,
        &[fixture.commit(job, lease, 1, &some, None, None)],
    )
    .await
    .expect("the batch commits");
    let running = fixture.claimed_job_on_new_connection().await;
    commit_many(
        &fixture.db,
        30.0,
        &[Commit {
            source_connection_id: running.1,
            ..fixture.commit(running.0, running.2, 1, &some, None, None)
        }],
    )
    .await
    .expect("the other job's batch commits");
    assert_eq!(fixture.seen_rows().await, 2);
    fixture
        .db
        .execute(
            "UPDATE sync_jobs SET status = 'failed', completed_at = now(),
                 lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
            &[&job],
        )
        .await
        .expect("the job ends");
    let grace = std::time::Duration::from_secs(60);
    jobs::reap(&mut fixture.db, grace, grace, 3, 0)
        .await
        .expect("the reaper runs");
    // The running job's row stays.
    let left: Vec<Uuid> = fixture
        .db
        .query("SELECT job_id FROM full_sync_seen", &[])
        .await
        .expect("full_sync_seen is readable")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, [running.0]);
}

impl Fixture {
    /// A job claimed on a second connection: (job, connection, lease).
    async fn claimed_job_on_new_connection(&self) -> (Uuid, Uuid, Uuid) {
        let connection = self.app.stub_connection(json!({}), false).await;
        let job = self.app.run(connection, true).await;
        (job, connection, self.claim(job).await)
    }
}
