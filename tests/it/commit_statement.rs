//! The batched commit statement: the batches of several jobs in one
//! statement stay apart, each fenced and counted on its own.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::TestApp;

#[tokio::test]
async fn one_commit_statement_keeps_each_jobs_batch_apart() {
    use syncway_model::JobStatus;
    use syncway_store::jobs::{
        Batch, Claim, Commit, Counts, EntityWrite, Outcome, claim_many, commit_many,
    };

    let app = TestApp::with_api(crate::harness::TestEnv::new().await, |_| {}).await;
    let db = app.db().await;
    let full = app.stub_connection(json!({}), false).await;
    let incremental = app.stub_connection(json!({}), true).await;
    let foreign = app.stub_connection(json!({}), false).await;
    let full_job = app.run(full, true).await;
    let incremental_job = app.run(incremental, false).await;
    let foreign_job = app.run(foreign, false).await;
    let claimed = claim_many(&db, &[full_job, incremental_job], "me", 30.0)
        .await
        .unwrap();
    let [
        Claim::Claimed(full_claim),
        Claim::Claimed(incremental_claim),
    ] = &claimed[..]
    else {
        panic!("both claimed: {claimed:?}");
    };
    let (full_lease, incremental_lease) = (full_claim.lease, incremental_claim.lease);
    let claimed = claim_many(&db, &[foreign_job], "someone-else", 30.0)
        .await
        .unwrap();
    assert!(matches!(claimed[..], [Claim::Claimed(_)]));

    let entity =
        |id: &str, value: i64| EntityWrite::new(id.to_string(), &json!({ "v": value })).unwrap();
    // What is stored before: e1..e3 on the full connection, x1 and x2 on
    // the incremental one.
    for (connection, stored) in [
        (
            full,
            vec![entity("e1", 1), entity("e2", 2), entity("e3", 3)],
        ),
        (incremental, vec![entity("x1", 1), entity("x2", 2)]),
    ] {
        for write in &stored {
            db.execute(
                "INSERT INTO entities (source_connection_id, entity_id, content_hash, payload)
                 VALUES ($1, $2, $3, $4::text::json)",
                &[
                    &connection,
                    &write.entity_id,
                    &&write.content_hash[..],
                    &write.payload,
                ],
            )
            .await
            .unwrap();
        }
        db.execute(
            "UPDATE cursors SET entity_count = $2 WHERE source_connection_id = $1",
            &[&connection, &(stored.len() as i64)],
        )
        .await
        .unwrap();
    }

    // The full sync completes having seen e1 (unchanged), e2 (changed) and
    // e4 (new): e3 is gone. The incremental batch adds x3 and reports x1 and
    // an unknown id deleted. The foreign job is not ours: nothing of it may
    // be written.
    let full_entities = [entity("e1", 1), entity("e2", 20), entity("e4", 4)];
    let incremental_entities = [entity("x3", 3)];
    let incremental_deleted = ["x1".to_string(), "nope".to_string()];
    let foreign_entities = [entity("f1", 1)];
    let completed = Outcome {
        status: JobStatus::Completed,
        error: None,
        error_category: None,
        error_details: None,
    };
    let cursor = json!(7);
    let commits = [
        Commit {
            job_id: full_job,
            source_connection_id: full,
            run_id: full_lease,
            seq: 1,
            batch: Batch {
                entities: &full_entities,
                full_sync: true,
                ..Batch::default()
            },
            outcome: Some(&completed),
        },
        Commit {
            job_id: incremental_job,
            source_connection_id: incremental,
            run_id: incremental_lease,
            seq: 1,
            batch: Batch {
                entities: &incremental_entities,
                deleted: &incremental_deleted,
                failed: 2,
                cursor: Some(&cursor),
                full_sync: false,
                seen_total: None,
                mass_delete_min_entities: None,
            },
            outcome: None,
        },
        Commit {
            job_id: foreign_job,
            source_connection_id: foreign,
            // Not the claim that holds it: someone else's is.
            run_id: Uuid::new_v4(),
            seq: 1,
            batch: Batch {
                entities: &foreign_entities,
                ..Batch::default()
            },
            outcome: Some(&completed),
        },
    ];
    let results = commit_many(&db, 30.0, &commits).await.unwrap();
    let counts = |inserted, updated, deleted, failed| Counts {
        inserted,
        updated,
        deleted,
        failed,
    };
    assert_eq!(
        results,
        [
            Some((JobStatus::Completed, counts(1, 1, 1, 0))),
            Some((JobStatus::Running, counts(1, 0, 1, 2))),
            None,
        ]
    );

    let stored = |connection: Uuid| {
        let db = &db;
        async move {
            db.query(
                "SELECT e.entity_id, e.payload, c.entity_count, c.value
                 FROM entities e JOIN cursors c USING (source_connection_id)
                 WHERE e.source_connection_id = $1 ORDER BY e.entity_id",
                &[&connection],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.get::<_, String>(0),
                    row.get::<_, Value>(1),
                    row.get::<_, i64>(2),
                    row.get::<_, Option<Value>>(3),
                )
            })
            .collect::<Vec<_>>()
        }
    };
    let full_rows = stored(full).await;
    assert_eq!(
        full_rows
            .iter()
            .map(|(id, payload, count, _)| (id.as_str(), payload["v"].as_i64(), *count))
            .collect::<Vec<_>>(),
        [("e1", Some(1), 3), ("e2", Some(20), 3), ("e4", Some(4), 3)]
    );
    let incremental_rows = stored(incremental).await;
    assert_eq!(
        incremental_rows
            .iter()
            .map(|(id, _, count, cursor)| (id.as_str(), *count, cursor.clone()))
            .collect::<Vec<_>>(),
        [("x2", 2, Some(json!(7))), ("x3", 2, Some(json!(7)))]
    );
    assert!(stored(foreign).await.is_empty());
    let job = app.job(full, full_job).await;
    assert_eq!(job["status"], "completed");
    let job = app.job(incremental, incremental_job).await;
    assert_eq!(
        (job["status"].clone(), job["entities_failed"].clone()),
        (json!("running"), json!(2))
    );
    let job = app.job(foreign, foreign_job).await;
    assert_eq!(job["status"], "running");

    // The same commits sent again (the connection was lost after COMMIT):
    // each applied one is recognised, writes nothing and counts nothing;
    // the foreign one is still not ours.
    let replayed = commit_many(&db, 30.0, &commits).await.unwrap();
    assert_eq!(
        replayed,
        [
            Some((JobStatus::Completed, Counts::default())),
            Some((JobStatus::Running, Counts::default())),
            None,
        ]
    );
    let job = app.job(incremental, incremental_job).await;
    assert_eq!(job["entities_failed"], 2, "{job}");
    assert_eq!(job["entities_inserted"], 1, "{job}");
    assert_eq!(stored(incremental).await.len(), 2);
    // A commit that skips a number is not applied either.
    let skipped = Commit {
        seq: 3,
        ..commits[1]
    };
    assert_eq!(commit_many(&db, 30.0, &[skipped]).await.unwrap(), [None]);
}
