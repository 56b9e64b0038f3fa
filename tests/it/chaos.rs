//! Chaos, the short form that runs in CI: workers killed over and over,
//! a worker paused past its lease, Postgres sessions terminated. Every job
//! is checked on its own: terminal, completed once with exact counts, its
//! stored entities equal to the source, and no job without a live owner
//! for longer than the bound (lease + one lease of grace + the reaper's
//! interval, plus a second for delivery and sampling). The last test kills
//! a worker between large batches (new entities copied in, see
//! `jobs::commit_bulk`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::harness::{TestApp, TestEnv, WorkerProcess, counts, eventually};

const LEASE: u64 = 2;
const REAP: u64 = 1;
/// lease + grace (one lease) + reap interval, plus delivery and sampling.
const BOUND: Duration = Duration::from_secs(LEASE + LEASE + REAP + 1);

fn process_settings() -> Vec<(&'static str, String)> {
    vec![
        ("SYNCWAY_WORKER__REAP_INTERVAL_SECONDS", REAP.to_string()),
        ("SYNCWAY_RETRY__MAX_ATTEMPTS", "20".into()),
        ("SYNCWAY_WORKER__CONCURRENCY", "4".into()),
    ]
}

/// `n` stub jobs of 400 entities, 5 ms each (batches of 40), triggered.
async fn stub_jobs(app: &TestApp, n: usize) -> Vec<(Uuid, Uuid)> {
    app.stub_jobs(n, json!({"entity_count": 400, "delay_ms_per_entity": 5}))
        .await
}

/// A worker in the test process with the chaos lease and reaper.
async fn add_in_process_worker(app: &mut TestApp) {
    app.add_worker(|settings| {
        settings.worker.lease_seconds = LEASE;
        settings.worker.reap_interval_seconds = REAP;
        settings.retry.max_attempts = 20;
    })
    .await;
}

/// Samples the jobs' phases every 50 ms and keeps, per job, the longest
/// time it had no live owner: from its lease's last renewal (the latest
/// its worker can have died) to the next claim.
struct GapWatch {
    stop: CancellationToken,
    task: JoinHandle<HashMap<Uuid, Duration>>,
}

impl GapWatch {
    async fn start(app: &TestApp, jobs: Vec<Uuid>) -> Self {
        let db = app.db().await;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut open: HashMap<Uuid, Instant> = HashMap::new();
            let mut worst: HashMap<Uuid, Duration> = HashMap::new();
            while !stopped.is_cancelled() {
                let rows = db
                    .query(
                        "SELECT id, job_phase(status, lease_owner, lease_expires_at, retry_at),
                                extract(epoch FROM now() - (lease_expires_at
                                    - make_interval(secs => $2)))::float8
                         FROM sync_jobs WHERE id = ANY($1)",
                        &[&jobs, &(LEASE as f64)],
                    )
                    .await
                    .unwrap_or_default();
                for row in rows {
                    let id: Uuid = row.get(0);
                    let phase: String = row.get(1);
                    if matches!(phase.as_str(), "expired" | "handed_back") {
                        let since_renewal = row.get::<_, Option<f64>>(2).unwrap_or(0.0).max(0.0);
                        open.entry(id).or_insert_with(|| {
                            Instant::now() - Duration::from_secs_f64(since_renewal)
                        });
                    } else if let Some(start) = open.remove(&id) {
                        let gap = worst.entry(id).or_default();
                        *gap = (*gap).max(start.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst
        });
        GapWatch { stop, task }
    }

    async fn worst(self) -> Duration {
        self.stop.cancel();
        let worst = self.task.await.expect("the gap watch");
        worst.values().copied().max().unwrap_or_default()
    }
}

/// Every job completed once: exact counts, and the stored ids are exactly
/// the stub's `stub-0 .. stub-{n-1}`.
async fn assert_each_completed_once(app: &TestApp, jobs: &[(Uuid, Uuid)], entities: i64) {
    for (connection, job) in jobs {
        let done = eventually("every job to end", Duration::from_secs(90), || async {
            // Right after sessions were terminated the API may answer 503
            // (Retry-After) from a pooled session that just died: a client
            // retries, and so does this.
            let (status, job) = app
                .call(
                    "GET",
                    &format!("/source-connections/{connection}/jobs/{job}"),
                    None,
                )
                .await;
            (status == reqwest::StatusCode::OK).then_some(())?;
            matches!(
                job["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
            .then_some(job)
        })
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(counts(&done), [entities, 0, 0, 0], "{done}");
        let ids: Vec<String> = app
            .db()
            .await
            .query(
                "SELECT entity_id FROM entities WHERE source_connection_id = $1
                 ORDER BY substr(entity_id, 6)::int",
                &[connection],
            )
            .await
            .expect("stored ids")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let expected: Vec<String> = (0..entities).map(|i| format!("stub-{i}")).collect();
        assert_eq!(ids, expected, "job {job}");
    }
}

#[tokio::test]
async fn a_job_whose_workers_die_three_times_in_a_row_is_back_in_hands_each_time() {
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    // About six seconds of source per run, in small batches.
    let connection = app
        .stub_connection(
            json!({"entity_count": 3000, "delay_ms_per_entity": 2}),
            false,
        )
        .await;
    let settings = process_settings();
    let mut holder = WorkerProcess::start(&app.env, LEASE, &settings);
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    let watch = GapWatch::start(&app, vec![job]).await;
    let mut takeovers = Vec::new();
    for attempt in 2..=4 {
        // The next holder is up before this one dies: the dead one's message
        // is redelivered to it at once, while the lease still looks live.
        let next = WorkerProcess::start(&app.env, LEASE, &settings);
        holder.kill();
        let killed = Instant::now();
        eventually(
            "the next worker to take the job over",
            Duration::from_secs(30),
            || async { (app.attempt(job).await == attempt).then_some(()) },
        )
        .await;
        takeovers.push(killed.elapsed());
        holder = next;
        app.running_with_data(connection, job).await;
    }
    assert_each_completed_once(&app, &[(connection, job)], 3000).await;
    let worst = watch.worst().await;
    eprintln!(
        "three deaths in a row: taken over after {takeovers:?}; worst ownerless gap {worst:?}"
    );
    for takeover in &takeovers {
        assert!(
            *takeover <= BOUND,
            "taken over after {takeover:?}, bound {BOUND:?}"
        );
    }
    assert!(worst <= BOUND, "ownerless for {worst:?}, bound {BOUND:?}");
    drop(holder);
}

#[tokio::test]
async fn a_paused_worker_resumed_after_a_takeover_writes_nothing() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let connection = app
        .stub_connection(
            json!({"entity_count": 3000, "delay_ms_per_entity": 2}),
            false,
        )
        .await;
    let zombie = WorkerProcess::start(&app.env, LEASE, &process_settings());
    let job = app.run(connection, false).await;
    app.running_with_data(connection, job).await;
    zombie.pause();
    add_in_process_worker(&mut app).await;
    eventually(
        "the job to be taken over",
        Duration::from_secs(30),
        || async { (app.attempt(job).await == 2).then_some(()) },
    )
    .await;
    // Back from the dead, in the middle of the new owner's run: its next
    // write (the batch it read ahead, its heartbeat) finds another owner.
    zombie.resume();
    assert_each_completed_once(&app, &[(connection, job)], 3000).await;
    assert_eq!(app.attempt(job).await, 2);
    drop(zombie);
}

#[tokio::test]
async fn jobs_survive_workers_killed_over_and_over() {
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let settings = process_settings();
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::start(&app.env, LEASE, &settings))
        .collect();
    let jobs = stub_jobs(&app, 12).await;
    let watch = GapWatch::start(&app, jobs.iter().map(|(_, job)| *job).collect()).await;
    // Kill one every two seconds for ten seconds, a fresh one in its place.
    for round in 0..5 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = round % workers.len();
        workers[victim].kill();
        workers[victim] = WorkerProcess::start(&app.env, LEASE, &settings);
    }
    assert_each_completed_once(&app, &jobs, 400).await;
    let worst = watch.worst().await;
    eprintln!("repeated kills: 12 jobs completed once each; worst ownerless gap {worst:?}");
    assert!(worst <= BOUND, "ownerless for {worst:?}, bound {BOUND:?}");
}

#[tokio::test]
async fn jobs_survive_postgres_sessions_terminated_twice_a_second() {
    let mut app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    add_in_process_worker(&mut app).await;
    let jobs = stub_jobs(&app, 8).await;
    let killer = app.db().await;
    let database = app.env.database.clone();
    let mut terminated = 0i64;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        terminated += killer
            .query_one(
                // Client sessions only: an autovacuum worker on the test's
                // database is a superuser's process (and not syncway's).
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend'",
                &[&database],
            )
            .await
            .map(|row| row.get::<_, i64>(0))
            .expect("terminating sessions");
    }
    assert!(terminated > 0);
    assert_each_completed_once(&app, &jobs, 400).await;
    eprintln!("backend kills: {terminated} sessions terminated; 8 jobs completed once each");
}

/// A worker killed between large batches of a full sync (each page of 300
/// items is copied in): the next worker reads the source from the start
/// again, probes what the first run stored, and every item ends up stored
/// once and counted once.
#[tokio::test]
async fn a_worker_killed_between_large_batches_loses_and_repeats_nothing() {
    use wiremock::matchers::{method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let app = TestApp::with_api(TestEnv::new().await.allowing_loopback(), |_| {}).await;
    let api = MockServer::start().await;
    let page = |number: u32| {
        let items: Vec<_> = (0..300)
            .map(|i| json!({"id": number * 300 + i, "name": format!("item {i}")}))
            .collect();
        let next = (number < 3).then(|| format!("/items?page={}", number + 2));
        json!({"items": items, "next": next})
    };
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(0)))
        .mount(&api)
        .await;
    // The later pages take a second each: the kill lands between batches.
    for number in 1..4 {
        Mock::given(method("GET"))
            .and(path("/items"))
            .and(query_param("page", (number + 1).to_string()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(page(number))
                    .set_delay(Duration::from_secs(1)),
            )
            .mount(&api)
            .await;
    }
    let connection = app
        .connection_of(
            "http_json",
            json!({"url": format!("{}/items", api.uri()), "items_path": "items",
                   "next_link_path": "next"}),
            json!({"api_key": "k"}),
            false,
        )
        .await;
    let vars = process_settings();
    let mut first = WorkerProcess::start(&app.env, LEASE, &vars);
    let job = app.run(connection, false).await;
    let running = app.running_with_data(connection, job).await;
    let second = WorkerProcess::start(&app.env, LEASE, &vars);
    first.kill();
    let left = app.job(connection, job).await;
    let committed = counts(&left)[0];
    assert!(
        left["status"] == "running" && (300..1200).contains(&committed),
        "killed mid-way: {left} (seen running as {running})"
    );

    assert_completed_with(&app, connection, job, 1200).await;
    assert_eq!(app.attempt(job).await, 2, "taken over once");
    drop(second);
}

/// The job completed with `entities` inserted in all, as many stored.
async fn assert_completed_with(app: &TestApp, connection: Uuid, job: Uuid, entities: i64) {
    let done = app.finished_job(connection, job).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(counts(&done), [entities, 0, 0, 0], "{done}");
    assert_eq!(app.entity_count(connection).await, entities);
    assert_eq!(
        app.connection(connection).await["entities"]["total_entities"],
        entities
    );
}
