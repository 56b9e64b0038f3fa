//! Retention (CONTRACT.md §9): finished jobs past `job_days` go with their
//! timelines, a batch at a time; a connection's newest finished jobs, its
//! last completed full sync and every active job stay; old audit entries
//! go; and the figures operators and clients read do not change when
//! history does.

use serde_json::json;
use syncway_store::retention::{self, Rules};
use uuid::Uuid;

use crate::harness::TestApp;

/// Inserts a job of `connection` that finished `days_ago` (pending, then
/// running, then `status`, as the engine would move it).
async fn finished_job(
    db: &deadpool_postgres::Object,
    connection: Uuid,
    days_ago: i32,
    status: &str,
    full: bool,
) -> Uuid {
    let id = Uuid::now_v7();
    for statement in [
        "INSERT INTO sync_jobs (id, source_connection_id, force_full_sync, created_at)
         SELECT $1, $2, $3, now() - make_interval(days => $4)",
        "UPDATE sync_jobs SET status = 'running', started_at = created_at
         WHERE id = $1 AND source_connection_id = $2 AND force_full_sync = $3 AND $4 > 0",
    ] {
        db.execute(statement, &[&id, &connection, &full, &days_ago])
            .await
            .expect("writing a job");
    }
    db.execute(
        "UPDATE sync_jobs SET status = $2, completed_at = created_at WHERE id = $1",
        &[&id, &status],
    )
    .await
    .expect("finishing a job");
    id
}

async fn exists(db: &deadpool_postgres::Object, job: Uuid) -> bool {
    db.query_opt("SELECT 1 FROM sync_jobs WHERE id = $1", &[&job])
        .await
        .expect("reading a job")
        .is_some()
}

#[tokio::test]
async fn old_jobs_go_but_the_newest_the_last_full_sync_and_active_ones_stay() {
    let app = TestApp::spawn_with(0).await;
    let busy = app.stub_connection(json!({}), true).await;
    let quiet = app.stub_connection(json!({}), true).await;
    let db = app.db().await;
    // `busy`: its oldest job is its last completed full sync (a failed full
    // sync came after it), then eleven more finished jobs, all 40 days old
    // and older; and an active job (the newest, as it always is: it can
    // only be created once the others ended), pending for 47 days.
    let last_full = finished_job(&db, busy, 60, "completed", true).await;
    let failed_full = finished_job(&db, busy, 59, "failed", true).await;
    let mut old = Vec::new();
    for n in 0..11 {
        old.push(finished_job(&db, busy, 58 - n, "completed", false).await);
    }
    let active = Uuid::now_v7();
    db.execute(
        "INSERT INTO sync_jobs (id, source_connection_id, created_at)
         VALUES ($1, $2, now() - interval '47 days')",
        &[&active, &busy],
    )
    .await
    .expect("an active job");
    // `quiet`: two recent jobs.
    let recent = [
        finished_job(&db, quiet, 1, "completed", false).await,
        finished_job(&db, quiet, 2, "failed", false).await,
    ];
    // An old audit entry and a recent one.
    db.execute(
        "INSERT INTO audit_log (organization_id, action, target_type, status, at)
         SELECT organization_id, 'old.one', 'test', 200, now() - interval '400 days'
         FROM source_connections WHERE id = $1
         UNION ALL
         SELECT organization_id, 'new.one', 'test', 200, now()
         FROM source_connections WHERE id = $1",
        &[&busy],
    )
    .await
    .expect("audit entries");
    // An old webhook message and a recent one.
    db.batch_execute(
        "INSERT INTO webhook_messages (id, organization_id, event_type, payload, created_at)
         SELECT gen_random_uuid(), id, 'sync.completed', '{}'::jsonb, now() - interval '40 days'
         FROM organizations
         UNION ALL
         SELECT gen_random_uuid(), id, 'sync.failed', '{}'::jsonb, now()
         FROM organizations",
    )
    .await
    .expect("webhook messages");
    let before = app.connection(busy).await;

    // Keep 5 per connection, 30 days; batches of 4 candidates: the sweep
    // takes four steps, as the loop runs them, to the end.
    let rules = Rules {
        job_days: 30,
        keep_per_connection: 5,
        audit_days: 365,
        webhook_days: 30,
        batch: 4,
    };
    let mut client = app.env.db().await;
    let mut position = None;
    let mut removed = 0;
    let mut steps = 0;
    loop {
        steps += 1;
        let (batch, next) = retention::remove_old_jobs(&mut client, rules, position)
            .await
            .expect("a retention step")
            .expect("the retention lock");
        removed += batch.total();
        position = next;
        if !batch.more {
            break;
        }
    }
    let entries = retention::remove_old_entries(&mut client, rules)
        .await
        .expect("a retention step")
        .expect("the retention lock");

    // The newest five finished jobs of `busy` are the last five of `old`.
    for job in &old[..6] {
        assert!(!exists(&db, *job).await, "an old job stayed");
    }
    for job in &old[6..] {
        assert!(exists(&db, *job).await, "one of the newest five went");
    }
    assert!(
        exists(&db, last_full).await,
        "the last completed full sync went"
    );
    assert!(
        !exists(&db, failed_full).await,
        "a failed full sync is not kept"
    );
    assert!(exists(&db, active).await, "an active job was touched");
    for job in recent {
        assert!(exists(&db, job).await, "a recent job went");
    }
    // Their timelines went with them: 7 jobs, `created` and their end each.
    assert_eq!(removed, 7 + 14);
    // 13 finished candidates, 4 at a time, and a last step that finds none.
    assert_eq!(steps, 5);
    let orphans: i64 = db
        .query_one(
            "SELECT count(*) FROM job_timeline t
             WHERE NOT EXISTS (SELECT 1 FROM sync_jobs j WHERE j.id = t.job_id)",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .expect("counting orphaned timeline items");
    assert_eq!(orphans, 0);
    assert_eq!(entries.rows, [("audit_log", 1), ("webhook_messages", 1)]);
    let kept: Vec<String> = db
        .query("SELECT event_type FROM webhook_messages", &[])
        .await
        .expect("the webhook messages")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(kept, ["sync.failed"]);
    let left: Vec<String> = db
        .query(
            "SELECT action FROM audit_log WHERE target_type = 'test'",
            &[],
        )
        .await
        .expect("the audit log")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, ["new.one"]);
    // A connection's run statistics are kept as jobs finish, not counted
    // from what retention left: 13 finished and the active one.
    assert_eq!(before["sync"]["total_runs"], 14, "{before}");
    let after = app.connection(busy).await;
    for figure in ["total_runs", "successful_runs", "failed_runs"] {
        assert_eq!(before["sync"][figure], after["sync"][figure], "{after}");
    }
}

#[tokio::test]
async fn run_statistics_and_deployment_figures_count_as_jobs_finish() {
    let app = TestApp::spawn().await;
    let connection = app.stub_connection(json!({"entity_count": 3}), true).await;
    for _ in 0..3 {
        app.sync(connection, false).await;
    }
    let body = app.connection(connection).await;
    assert_eq!(body["sync"]["total_runs"], 3, "{body}");
    assert_eq!(body["sync"]["successful_runs"], 3, "{body}");
    // Removing the history changes neither.
    app.db()
        .await
        .execute(
            "DELETE FROM sync_jobs WHERE source_connection_id = $1 AND NOT active",
            &[&connection],
        )
        .await
        .expect("removing the history by hand");
    let again = app.connection(connection).await;
    for figure in ["total_runs", "successful_runs", "failed_runs"] {
        assert_eq!(body["sync"][figure], again["sync"][figure], "{again}");
    }
    let totals: Vec<(String, i64)> = app
        .db()
        .await
        .query(
            "SELECT status, sum(n)::bigint FROM (
                 SELECT status, n FROM job_totals
                 UNION ALL SELECT status, 1 FROM job_ends) t
             GROUP BY status",
            &[],
        )
        .await
        .expect("the totals")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(totals, [("completed".to_owned(), 3)]);
}
