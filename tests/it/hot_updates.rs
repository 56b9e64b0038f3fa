//! The job row's hot path writes no index: Postgres updates a row in place
//! (HOT) only when no indexed column changes, partial indexes' predicate
//! columns included. A claim (pending -> running) and a lease renewal must
//! stay HOT whatever indexes later issues add (V7 and V8 each broke the
//! claim with a `status` predicate; V11 repaired both).

use serde_json::json;

use crate::harness::{TestApp, TestEnv};

#[tokio::test]
async fn a_claim_and_a_lease_renewal_update_the_job_row_in_place() {
    let app = TestApp::spawn_on(TestEnv::new().await, 0).await;
    let connection = app.stub_connection(json!({}), false).await;
    let job = app.run(connection, false).await;
    let mut db = app.db().await;
    let transaction = db.transaction().await.expect("a transaction");
    let hot_updates = |label: &'static str| {
        let transaction = &transaction;
        async move {
            let row = transaction
                .query_one(
                    "SELECT pg_stat_get_xact_tuples_updated('sync_jobs'::regclass),
                            pg_stat_get_xact_tuples_hot_updated('sync_jobs'::regclass)",
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("reading the statistics {label}: {e}"));
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        }
    };
    let claimed = syncway_store::jobs::claim(&transaction, job, "hot-test-worker", 30.0)
        .await
        .expect("the claim");
    let syncway_store::jobs::Claim::Claimed(claimed) = claimed else {
        panic!("not claimed: {claimed:?}");
    };
    assert_eq!(
        hot_updates("after the claim").await,
        (1, 1),
        "the claim is HOT"
    );
    syncway_store::jobs::heartbeat(&transaction, job, claimed.lease, 30.0)
        .await
        .expect("a lease renewal");
    assert_eq!(
        hot_updates("after the renewal").await,
        (2, 2),
        "the lease renewal is HOT"
    );
    transaction.rollback().await.expect("rolling back");
}
