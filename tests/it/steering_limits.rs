//! Steering's limits (CONTRACT.md §11): a source's request budget shared by
//! every job on every worker, caps per source type, and manual runs ahead
//! of a scheduled backlog.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncway_model::JobMessage;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::harness::{DEADLINE, TestApp, TestEnv, counts, eventually};

/// Pages of two items, linked by `next` up to page `PAGES`, recording when
/// each request arrived.
struct Pages {
    base: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

const PAGES: u32 = 5;

impl Respond for Pages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Instant::now());
        let page: u32 = request
            .url
            .query_pairs()
            .find(|(name, _)| name == "page")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(1);
        let next = (page < PAGES).then(|| format!("{}/items?page={}", self.base, page + 1));
        ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": page * 2}, {"id": page * 2 + 1}],
            "next": next,
        }))
    }
}

#[tokio::test]
async fn every_worker_draws_from_one_budget_per_source_host() {
    const RATE: f64 = 10.0;
    let budget = |settings: &mut syncway_runtime::Settings| {
        settings.limits.source_requests_per_second = BTreeMap::from([("127.0.0.1".into(), RATE)]);
    };
    let mut app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), budget).await;
    for _ in 0..3 {
        app.add_worker(budget).await;
    }
    let api = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(Pages {
            base: api.uri(),
            arrivals: arrivals.clone(),
        })
        .mount(&api)
        .await;
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let connection = app
            .connection_of(
                "http_json",
                json!({"url": format!("{}/items", api.uri()), "items_path": "data",
                       "next_link_path": "next"}),
                None,
                false,
            )
            .await;
        jobs.push((connection, app.run(connection, false).await));
    }
    // Every job completes; meanwhile one is seen waiting for the budget.
    let mut waited = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = 0;
        for (connection, job) in &jobs {
            let body = app.job(*connection, *job).await;
            waited |= body["waiting_reason"]["code"] == "source_budget";
            if body["status"] == "completed" {
                assert_eq!(counts(&body), [10, 0, 0, 0], "{body}");
                assert!(body["waiting_reason"].is_null(), "{body}");
                done += 1;
            } else {
                assert!(
                    matches!(body["status"].as_str(), Some("pending" | "running")),
                    "{body}"
                );
            }
        }
        if done == jobs.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not complete");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(waited, "no job was seen waiting for the source's budget");
    let arrivals = arrivals
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    assert_eq!(arrivals.len(), jobs.len() * PAGES as usize);
    // The mock never saw more than a second's budget, plus one burst, in
    // any window of a second less LAG: the budget spaces the requests'
    // slots; a request reaches the mock after its slot, by up to LAG more
    // than another one does on this busy machine (its worker's wake-up,
    // the HTTP exchange). Without the shared budget every request comes
    // within a few hundred milliseconds, and with a budget per worker at
    // four times the rate: either fails this.
    const LAG: Duration = Duration::from_millis(200);
    let window = Duration::from_secs(1) - LAG;
    let most = arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|at| **at >= *start && at.duration_since(*start) < window)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most <= RATE as usize + 1,
        "{most} requests within {window:?}"
    );
    let span = arrivals
        .iter()
        .max()
        .copied()
        .zip(arrivals.iter().min().copied());
    let span = span
        .map(|(last, first)| last.duration_since(first))
        .unwrap_or_default();
    assert!(
        span >= Duration::from_secs_f64((arrivals.len() - 1) as f64 / RATE * 0.9),
        "{} requests in {span:?}",
        arrivals.len()
    );
}

#[tokio::test]
async fn a_source_type_runs_no_more_jobs_than_its_cap() {
    let cap = |settings: &mut syncway_runtime::Settings| {
        settings.worker.concurrency = 4;
        settings.limits.max_running_jobs_per_source_type = BTreeMap::from([("stub".into(), 1)]);
    };
    let mut app = TestApp::with_api(TestEnv::new().await, cap).await;
    app.add_worker(cap).await;
    app.add_worker(cap).await;
    let jobs = app
        .stub_jobs(4, json!({"entity_count": 10, "delay_ms_per_entity": 30}))
        .await;
    let db = app.db().await;
    let mut most_running = 0;
    let mut held_seen = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'running' AND lease_owner IS NOT NULL
                                         AND lease_expires_at > now()),
                        count(*) FILTER (WHERE status = 'completed')
                 FROM sync_jobs",
                &[],
            )
            .await
            .expect("sampling the jobs");
        most_running = most_running.max(row.get::<_, i64>(0));
        for (connection, job) in &jobs {
            let body = app.job(*connection, *job).await;
            held_seen |= body["waiting_reason"]["code"] == "source_type_cap";
        }
        if row.get::<_, i64>(1) == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not complete");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most_running, 1, "stub jobs running at once");
    assert!(held_seen, "no job said it waited for its source type's cap");
}

#[tokio::test]
async fn a_manual_run_starts_ahead_of_the_scheduled_backlog() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    app.add_worker(|settings| settings.worker.concurrency = 1)
        .await;
    // 30 scheduled jobs of about 100 ms each, queued in the jobs queue.
    let mut scheduled = Vec::new();
    for _ in 0..30 {
        scheduled.push(
            app.stub_connection(json!({"entity_count": 5, "delay_ms_per_entity": 20}), false)
                .await,
        );
    }
    let mut db = app.db().await;
    let transaction = db.transaction().await.expect("a transaction");
    let mut scheduled_jobs = Vec::new();
    for (n, connection) in scheduled.iter().enumerate() {
        let job = Uuid::now_v7();
        transaction
            .execute(
                "INSERT INTO sync_jobs (id, source_connection_id, trigger, scheduled_for)
                 VALUES ($1, $2, 'schedule', now() - make_interval(secs => $3))",
                &[&job, connection, &(n as f64)],
            )
            .await
            .expect("a scheduled job");
        transaction
            .execute(
                "INSERT INTO outbox (job_id, payload, kind) VALUES ($1, $2, 'job')",
                &[&job, &JobMessage::new(job, *connection).encode()],
            )
            .await
            .expect("its message");
        scheduled_jobs.push(job);
    }
    transaction.commit().await.expect("committing the backlog");
    eventually("the backlog to start", DEADLINE, || async {
        let started: i64 = db
            .query_one(
                "SELECT count(*) FROM sync_jobs WHERE trigger = 'schedule' AND started_at IS NOT NULL",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (started > 0).then_some(())
    })
    .await;
    let manual = app.stub_connection(json!({"entity_count": 1}), false).await;
    let job = app.run(manual, false).await;
    let done: Value = app.finished_job(manual, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE s.started_at < m.started_at),
                    count(*) FILTER (WHERE s.started_at IS NULL OR s.started_at > m.started_at)
             FROM sync_jobs s, sync_jobs m
             WHERE s.id = ANY($1) AND m.id = $2",
            &[&scheduled_jobs, &job],
        )
        .await
        .expect("comparing start times");
    let (before, after): (i64, i64) = (row.get(0), row.get(1));
    assert!(before <= 3, "{before} scheduled jobs started first");
    assert!(
        after >= 20,
        "only {after} scheduled jobs were still waiting"
    );
}
