//! The path of a trigger through both binaries, and the stub connector's
//! sync semantics: counts, cursors, incremental and full syncs, failures.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, counts};

async fn entity_count(app: &TestApp, connection: Uuid) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM entities WHERE source_connection_id = $1",
            &[&connection],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_trigger_runs_a_stub_sync_to_completion() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 250}), false)
        .await;

    let (status, job) = app
        .call(
            "POST",
            &format!("/source-connections/{connection}/run"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["source_connection_id"], connection.to_string());
    for field in [
        "started_at",
        "completed_at",
        "duration_seconds",
        "error",
        "error_category",
        "error_details",
    ] {
        assert!(
            job.get(field).is_some_and(Value::is_null),
            "{field} in {job}"
        );
    }
    assert_eq!(counts(&job), [0, 0, 0, 0]);

    let job_id = crate::harness::id_of(&job);
    let done = app.finished_job(connection, job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [250, 0, 0, 0]);
    let started = done["started_at"]
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    let completed = done["completed_at"]
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    let (Some(started), Some(completed)) = (started, completed) else {
        panic!("timestamps missing in {done}");
    };
    assert!(
        done["completed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let duration = done["duration_seconds"].as_f64().unwrap_or(-1.0);
    assert!(
        (duration - (completed - started).num_microseconds().unwrap_or(0) as f64 / 1e6).abs()
            < 1e-6
    );
    assert_eq!(entity_count(&app, connection).await, 250);

    let body = app.connection(connection).await;
    assert_eq!(body["status"], "active");
    assert_eq!(body["entities"]["total_entities"], 250);
    assert_eq!(body["sync"]["total_runs"], 1);
    assert_eq!(body["sync"]["successful_runs"], 1);
    assert_eq!(body["sync"]["last_job"]["id"], job_id.to_string());
    assert_eq!(body["schedule"]["cursor_value"], 249);

    let (status, jobs) = app
        .call(
            "GET",
            &format!("/source-connections/{connection}/jobs"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
    assert_eq!(jobs[0], done);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_and_limited() {
    let app = TestApp::spawn().await;
    let connection = app.stub_connection(json!({"entity_count": 1}), false).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let job = app.run(connection, false).await;
        app.finished_job(connection, job).await;
        ids.push(job.to_string());
    }
    let (_, jobs) = app
        .call(
            "GET",
            &format!("/source-connections/{connection}/jobs"),
            None,
        )
        .await;
    let listed: Vec<&str> = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_str())
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    let (_, jobs) = app
        .call(
            "GET",
            &format!("/source-connections/{connection}/jobs?limit=1"),
            None,
        )
        .await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
    assert_eq!(jobs[0]["id"], ids[0].as_str());
}

#[tokio::test]
async fn incremental_and_full_syncs_count_exactly_what_changed() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 100}), true)
        .await;
    let path = format!("/source-connections/{connection}");
    let patch = |config: Value| {
        let app = &app;
        let path = path.clone();
        async move {
            let (status, body) = app
                .call("PATCH", &path, Some(json!({"config": config})))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };

    // First run of a continuous connection: no cursor yet, everything is new.
    let job = app.run(connection, false).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [100, 0, 0, 0]
    );

    // Incremental: only the 50 entities after the cursor are read.
    patch(json!({"entity_count": 150})).await;
    let job = app.run(connection, false).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [50, 0, 0, 0]
    );
    assert_eq!(
        app.connection(connection).await["schedule"]["cursor_value"],
        149
    );

    // Nothing new: an incremental run counts nothing.
    let job = app.run(connection, false).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [0, 0, 0, 0]
    );

    // Forced full sync of unchanged data: every entity is unchanged.
    let job = app.run(connection, true).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [0, 0, 0, 0]
    );

    // New content for every entity: a full sync counts 150 updates.
    patch(json!({"entity_count": 150, "seed": 7})).await;
    let job = app.run(connection, true).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [0, 150, 0, 0]
    );

    // The source shrank: a full sync deletes what it no longer has.
    patch(json!({"entity_count": 120, "seed": 7})).await;
    let job = app.run(connection, true).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [0, 0, 30, 0]
    );
    assert_eq!(entity_count(&app, connection).await, 120);
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        120
    );
}

#[tokio::test]
async fn a_non_continuous_connection_always_runs_full() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 40}), false)
        .await;
    let job = app.run(connection, false).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [40, 0, 0, 0]
    );
    // A full sync re-reads all 40; unchanged, so nothing is counted...
    let (status, _) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"config": {"entity_count": 30}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // ...and force_full_sync=false still deletes the 10 that are gone.
    let job = app.run(connection, false).await;
    assert_eq!(
        counts(&app.finished_job(connection, job).await),
        [0, 0, 10, 0]
    );
}

#[tokio::test]
async fn counts_grow_while_the_job_runs() {
    let app = TestApp::spawn().await;
    // 400 entities at 5 ms each: about 2 s, in batches of 40.
    let connection = app
        .stub_connection(
            json!({"entity_count": 400, "delay_ms_per_entity": 5}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let running = app
        .job_where(
            connection,
            job,
            "running with some entities counted",
            |job| {
                job["status"] == "running"
                    && job["entities_inserted"].as_i64().is_some_and(|n| n > 0)
            },
        )
        .await;
    assert!(
        running["entities_inserted"].as_i64().unwrap_or(0) < 400,
        "{running}"
    );
    assert!(running["started_at"].is_string());
    assert!(running["completed_at"].is_null());
    assert!(running["duration_seconds"].is_null());
    let done = app.finished_job(connection, job).await;
    assert_eq!(counts(&done), [400, 0, 0, 0]);
}

#[tokio::test]
async fn a_transient_source_failure_keeps_what_was_committed() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 3000, "fail_after": 1500}), true)
        .await;
    let job = app.run(connection, false).await;
    let failed = app.finished_job(connection, job).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("failed after 1500")),
        "{failed}"
    );
    assert_eq!(failed["error_details"]["kind"], "transient");
    assert!(failed["error_category"].is_null());
    assert!(failed["completed_at"].is_string());
    // The 1500 entities read before the failure are committed, and the
    // cursor covers exactly them.
    assert_eq!(counts(&failed), [1500, 0, 0, 0]);
    assert_eq!(entity_count(&app, connection).await, 1500);
    let body = app.connection(connection).await;
    assert_eq!(body["schedule"]["cursor_value"], 1499);
    assert_eq!(body["status"], "error");
    assert_eq!(body["sync"]["failed_runs"], 1);
}

#[tokio::test]
async fn a_credential_failure_needs_reauthentication_before_the_next_run() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 10, "fail_after": 0, "fail_kind": "credentials"}),
            false,
        )
        .await;
    let job = app.run(connection, false).await;
    let failed = app.finished_job(connection, job).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_category"], "api_key_invalid");

    let body = app.connection(connection).await;
    assert_eq!(body["status"], "needs_reauth");
    assert_eq!(body["auth"]["authenticated"], false);
    assert_eq!(body["error_category"], "api_key_invalid");
    let (status, body) = app
        .call(
            "POST",
            &format!("/source-connections/{connection}/run"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("re-authentication"))
    );

    // New credentials (and a config that no longer fails) clear it.
    let (status, body) = app
        .call(
            "PATCH",
            &format!("/source-connections/{connection}"),
            Some(json!({"authentication": {"credentials": {"token": "new"}}, "config": {"entity_count": 10}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["auth"]["authenticated"], true);
    let job = app.run(connection, false).await;
    assert_eq!(
        app.finished_job(connection, job).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn credentials_are_stored_encrypted_and_never_returned() {
    let app = TestApp::spawn().await;
    let collection = app.create_collection().await;
    let (status, body) = app
        .call(
            "POST",
            "/source-connections",
            Some(json!({
                "short_name": "stub",
                "readable_collection_id": collection,
                "authentication": {"credentials": {"password": "hunter2-secret"}},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.to_string().contains("hunter2-secret"));
    let connection = crate::harness::id_of(&body);
    let row = app
        .db()
        .await
        .query_one(
            "SELECT credentials FROM source_connections WHERE id = $1",
            &[&connection],
        )
        .await;
    let sealed: Vec<u8> = row.map(|row| row.get(0)).unwrap_or_default();
    assert!(!sealed.is_empty());
    assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
    // The worker can open them: the sync runs.
    let job = app.run(connection, false).await;
    assert_eq!(
        app.finished_job(connection, job).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn sync_immediately_triggers_a_first_job() {
    let app = TestApp::spawn().await;
    let collection = app.create_collection().await;
    let (status, body) = app
        .call(
            "POST",
            "/source-connections",
            Some(json!({
                "short_name": "stub",
                "readable_collection_id": collection,
                "config": {"entity_count": 5},
                "sync_immediately": true,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Stub connection");
    let connection = crate::harness::id_of(&body);
    let Some(job) = body["sync"]["last_job"]["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
    else {
        panic!("no first job in {body}");
    };
    assert_eq!(
        app.finished_job(connection, job).await["entities_inserted"],
        5
    );
}

#[tokio::test]
async fn deleting_a_connection_removes_its_jobs_cursor_and_entities() {
    let app = TestApp::spawn().await;
    let connection = app.stub_connection(json!({"entity_count": 20}), true).await;
    let job = app.run(connection, false).await;
    app.finished_job(connection, job).await;
    let (status, body) = app
        .call("DELETE", &format!("/source-connections/{connection}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], connection.to_string());
    assert_eq!(body["entities"]["total_entities"], 20);
    let (status, _) = app
        .call("GET", &format!("/source-connections/{connection}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let db = app.db().await;
    for table in ["sync_jobs", "cursors", "entities"] {
        let left: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE source_connection_id = $1"),
                &[&connection],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(-1);
        assert_eq!(left, 0, "{table}");
    }
}

#[tokio::test]
async fn connections_are_listed_with_their_status_and_counts() {
    let app = TestApp::spawn().await;
    let first = app.stub_connection(json!({"entity_count": 3}), false).await;
    let second = app.stub_connection(json!({"entity_count": 4}), false).await;
    let job = app.run(first, false).await;
    app.finished_job(first, job).await;
    let (status, list) = app.call("GET", "/source-connections", None).await;
    assert_eq!(status, StatusCode::OK);
    let items = list.as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], first.to_string());
    assert_eq!(items[0]["entity_count"], 3);
    assert_eq!(items[0]["status"], "active");
    assert_eq!(items[0]["is_authenticated"], true);
    assert_eq!(items[0]["auth_method"], "direct");
    assert_eq!(items[1]["id"], second.to_string());
    let collection = app.connection(second).await["readable_collection_id"].clone();
    let (_, only) = app
        .call(
            "GET",
            &format!(
                "/source-connections?collection={}",
                collection.as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    assert_eq!(only[0]["id"], second.to_string());
    let (_, page) = app
        .call("GET", "/source-connections?skip=1&limit=1", None)
        .await;
    assert_eq!(page[0]["id"], second.to_string());
}

/// Several jobs' batches in one statement: each is counted, written and
/// fenced on its own.
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
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        claimed
            .iter()
            .all(|claim| matches!(claim, Claim::Claimed(_)))
    );
    let claimed = claim_many(&db, &[foreign_job], "someone-else", 30.0)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(matches!(claimed[..], [Claim::Claimed(_)]));

    let entity = |id: &str, value: i64| {
        EntityWrite::new(id.to_string(), &json!({ "v": value }))
            .unwrap_or_else(|error| panic!("{error}"))
    };
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
            .unwrap_or_else(|error| panic!("{error}"));
        }
        db.execute(
            "UPDATE cursors SET entity_count = $2 WHERE source_connection_id = $1",
            &[&connection, &(stored.len() as i64)],
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
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
            batch: Batch {
                entities: &incremental_entities,
                deleted: &incremental_deleted,
                failed: 2,
                cursor: Some(&cursor),
                full_sync: false,
            },
            outcome: None,
        },
        Commit {
            job_id: foreign_job,
            source_connection_id: foreign,
            batch: Batch {
                entities: &foreign_entities,
                ..Batch::default()
            },
            outcome: Some(&completed),
        },
    ];
    let results = commit_many(&db, "me", 30.0, &commits)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
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
            .unwrap_or_else(|error| panic!("{error}"))
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
}

#[tokio::test]
async fn stored_entities_are_listed_page_by_page() {
    let app = TestApp::spawn().await;
    let connection = app
        .stub_connection(json!({"entity_count": 25, "payload_bytes": 16}), false)
        .await;
    let job = app.run(connection, false).await;
    assert_eq!(
        app.finished_job(connection, job).await["status"],
        "completed"
    );

    let path = format!("/source-connections/{connection}/entities");
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &after {
            Some(after) => format!("?limit=10&after={after}"),
            None => "?limit=10".to_string(),
        };
        let (status, body) = app.call("GET", &format!("{path}{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            let payload = &item["payload"];
            assert_eq!(
                item["content_hash"].as_str(),
                Some(hex::encode(syncway_model::content_hash(payload)).as_str())
            );
            assert!(item["updated_at"].is_string(), "{item}");
            seen.push(item["entity_id"].as_str().unwrap_or_default().to_string());
        }
        match body["next"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), 10);
                after = Some(next.to_string());
            }
            None => {
                assert!(body["next"].is_null(), "{body}");
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = (0..25).map(|i| format!("stub-{i}")).collect();
    expected.sort();
    // Entity id order, each once.
    assert_eq!(seen, expected);

    for bad in ["?limit=0", "?limit=1001", "?after=zz", "?after=ff"] {
        let (status, body) = app.call("GET", &format!("{path}{bad}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (status, _) = app
        .call(
            "GET",
            &format!("/source-connections/{}/entities", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
