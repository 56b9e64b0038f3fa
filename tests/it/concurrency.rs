//! The database, not the application, allows one active job per connection.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{DEADLINE, TestApp, TestEnv, eventually};

#[tokio::test]
async fn twenty_concurrent_triggers_give_exactly_one_job() {
    // No worker: the accepted job stays pending, so every other trigger
    // must see it.
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let connection = app.stub_connection(json!({}), false).await;
    let path = format!("/source-connections/{connection}/run");
    let triggers = (0..20).map(|_| app.call("POST", &path, None));
    let answers = futures_util::future::join_all(triggers).await;
    let ok = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    let conflicts: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CONFLICT)
        .collect();
    assert_eq!(ok, 1, "{answers:?}");
    assert_eq!(conflicts.len(), 19, "{answers:?}");
    assert!(conflicts.iter().all(|(_, body)| body["detail"].is_string()));
    let jobs: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM sync_jobs WHERE source_connection_id = $1",
            &[&connection],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1);
    assert_eq!(jobs, 1);
}

#[tokio::test]
async fn one_trigger_batch_answers_every_request_on_its_own() {
    use syncway_store::api_keys::digest;
    use syncway_store::jobs::{TriggerRequest, Triggered, trigger_many};
    use uuid::Uuid;

    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let free = app.stub_connection(json!({}), false).await;
    let busy = app.stub_connection(json!({}), false).await;
    let reauth = app.stub_connection(json!({}), false).await;
    app.run(busy, false).await;
    let db = app.db().await;
    db.execute(
        "UPDATE source_connections SET needs_reauth = true WHERE id = $1",
        &[&reauth],
    )
    .await
    .unwrap();
    let request = |key: &str, connection: Uuid| TriggerRequest {
        key_digest: digest(key),
        source_connection_id: connection,
        force_full_sync: true,
        allow_mass_deletion: false,
        request_id: None,
        client_address: None,
    };
    let requests = [
        request("sw_not_a_key", free),
        request(&app.key, Uuid::new_v4()),
        request(&app.key, reauth),
        request(&app.key, busy),
        request(&app.key, free),
        // The same connection again in the same batch: the first wins.
        request(&app.key, free),
    ];
    let answers = trigger_many(&db, &requests).await.unwrap();
    let kinds: Vec<String> = answers
        .iter()
        .map(|answer| match answer {
            Triggered::Created(job) => {
                assert_eq!(job.source_connection_id, free);
                "created".to_string()
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "KeyInvalid",
            "ConnectionMissing",
            "NeedsReauth",
            "AlreadyActive",
            "created",
            "AlreadyActive"
        ]
    );
    // Jobs: the busy connection's and the new one, nothing else.
    let counts = db
        .query_one(
            "SELECT (SELECT count(*) FROM sync_jobs WHERE source_connection_id = $1
                       AND force_full_sync AND status = 'pending'),
                    (SELECT count(*) FROM sync_jobs)",
            &[&free],
        )
        .await
        .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)))
        .expect("counting jobs");
    assert_eq!(counts.0, 1);
    assert_eq!(
        counts.1, 2,
        "only the busy connection's job and the new one"
    );
    // The new job got its message through the outbox (the API's relay
    // publishes it, at once or at its next poll): once the outbox is empty,
    // the manual-runs queue holds the busy job's message and this one.
    let broker = app.env.broker().await;
    let queue = broker.topology().manual_queue().to_owned();
    eventually("the new job's message is published", DEADLINE, || async {
        let outbox: i64 = db
            .query_one("SELECT count(*) FROM outbox", &[])
            .await
            .ok()?
            .get(0);
        let depth = broker.queue_depth(&queue).await.ok()??;
        (outbox == 0 && depth == 2).then_some(())
    })
    .await;
}

/// Cached statement plans are refreshed as a connection is reused (see
/// `syncway_store::pool`): the statement cache is emptied on the 16th and
/// 32nd reuse, and kept otherwise.
#[tokio::test]
async fn pooled_connections_refresh_their_statement_plans() {
    let env = TestEnv::new().await;
    let pool = syncway_store::open(
        &syncway_store::PoolSettings::new(&env.database_url(), 1),
        false,
    )
    .await
    .unwrap();
    let mut emptied = Vec::new();
    for get in 1..=40 {
        let client = pool.get().await.unwrap();
        if client.statement_cache.size() == 0 {
            emptied.push(get);
        }
        client.prepare_cached("SELECT 1").await.unwrap();
    }
    // The first get makes the connection; the next 16 reuse it.
    assert_eq!(emptied, [1, 18, 34]);
}

/// Sessions use generic plans and are bounded (see `syncway_store::pool`),
/// after whatever options the database URL gives.
#[tokio::test]
async fn sessions_use_generic_plans_are_bounded_and_keep_the_urls_options() {
    let env = TestEnv::new().await;
    let url = format!(
        "{}?options=-c%20statement_timeout%3D12345",
        env.database_url()
    );
    let settings = syncway_store::PoolSettings::new(&url, 1)
        .bounded(std::time::Duration::from_secs(6))
        .named("bounded-sessions-test");
    let pool = syncway_store::open(&settings, false).await.unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('plan_cache_mode'), current_setting('jit'), \
             current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (
            "force_generic_plan".to_string(),
            "off".to_string(),
            "12345ms".to_string()
        )
    );
    let bounds: Vec<String> = client
        .query_one(
            "SELECT current_setting('idle_in_transaction_session_timeout'), \
             current_setting('lock_timeout'), current_setting('tcp_user_timeout'), \
             current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), \
             current_setting('tcp_keepalives_count'), current_setting('application_name')",
            &[],
        )
        .await
        .map(|row| (0..7).map(|i| row.get(i)).collect())
        .expect("the session's settings");
    assert_eq!(
        bounds,
        ["6s", "6s", "6000", "3", "1", "3", "bounded-sessions-test"]
    );
}
