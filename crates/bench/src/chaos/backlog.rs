//! `fair-share-backlog`: one organization triggers a backlog far beyond its
//! share (2 running jobs) on three workers. The held jobs wait in Postgres;
//! what that costs is measured while they wait, per job that ran: claims,
//! holds and messages published. Waiting costs nothing when each is about
//! one (the claim that held it, the claim that ran it, the trigger's and
//! the release's messages), however deep the backlog.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;

use super::drive::{uuid, worker_vars};
use super::{KEY, Options, Outcome, Scenario, verify};
use crate::processes::{BenchEnv, create_connections, metric};

/// The organization's share.
const SHARE: &str = "2";
/// How long the costs are measured while the backlog waits.
const WINDOW: Duration = Duration::from_secs(10);

/// Claims, holds and published messages, summed over every process.
async fn costs(http: &reqwest::Client, env: &BenchEnv, workers: &[String]) -> (f64, f64, f64) {
    let mut totals = (0.0, 0.0, 0.0);
    for url in workers {
        let read = |name: &'static str| async move { metric(http, url, name).await.unwrap_or(0.0) };
        totals.0 += read("syncway_worker_jobs_claimed_total").await;
        totals.1 += read("syncway_worker_fair_share_waits_total").await;
        totals.2 += read("syncway_worker_outbox_published_total").await;
    }
    for url in &env.api_metrics {
        totals.2 += metric(http, url, "syncway_api_outbox_published_total")
            .await
            .unwrap_or(0.0);
    }
    totals
}

async fn completed(env: &BenchEnv) -> anyhow::Result<i64> {
    Ok(env
        .client()
        .await?
        .query_one(
            "SELECT count(*) FROM sync_jobs WHERE status = 'completed'",
            &[],
        )
        .await?
        .get(0))
}

pub(super) async fn drive(options: &Options, env: &mut BenchEnv) -> anyhow::Result<Outcome> {
    let http = reqwest::Client::new();
    let api = env
        .start_api(&http, KEY, &[("SYNCWAY_DATABASE__POOL_SIZE", "4".into())])
        .await?;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let mut vars = worker_vars();
        vars.push(("SYNCWAY_LIMITS__MAX_RUNNING_JOBS_PER_ORG", SHARE.into()));
        workers.push(env.start_worker(&http, &vars).await?);
    }
    let stub = syncway_model::StubConfig {
        entity_count: 10,
        ..syncway_model::StubConfig::default()
    };
    let body = json!({"short_name": "stub", "config": {"entity_count": stub.entity_count}});
    let connections =
        create_connections(&http, &api, KEY, "backlog", body, options.backlog).await?;
    eprintln!(
        "chaos: backlog: {} connections made; triggering",
        connections.len()
    );
    let http = &http;
    let api = api.as_str();
    let jobs: Vec<(uuid::Uuid, uuid::Uuid)> = futures_util::stream::iter(connections)
        .map(|connection| async move {
            let response: serde_json::Value = http
                .post(format!("{api}/source-connections/{connection}/run"))
                .header("x-api-key", KEY)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok((connection, uuid(&response)?))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    // The backlog waits: measure what it costs.
    let (before, done_before, started) = (
        costs(http, env, &workers).await,
        completed(env).await?,
        Instant::now(),
    );
    tokio::time::sleep(WINDOW).await;
    let after = costs(http, env, &workers).await;
    let ran = (completed(env).await? - done_before).max(1) as f64;
    let seconds = started.elapsed().as_secs_f64();
    let (claims, holds, published) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let note = format!(
        "while {} waited: {:.0} jobs/s ran; per job run {:.2} claims, {:.2} holds, {:.2} messages ({:.0} claims/s, {:.0} holds/s, {:.0} messages/s)",
        jobs.len(),
        ran / seconds,
        claims / ran,
        holds / ran,
        published / ran,
        claims / seconds,
        holds / seconds,
        published / seconds
    );
    eprintln!("chaos: backlog: {note}");
    let (lost, doubled, stuck) = verify::check(env, &jobs, &stub).await?;
    Ok(Outcome {
        scenario: Scenario::FairShareBacklog,
        jobs: jobs.len(),
        lost,
        doubled,
        stuck,
        recovery: None,
        worst_gap: Duration::ZERO,
        most_in_flight: 0,
        note,
        clean: lost == 0 && doubled == 0 && stuck == 0,
    })
}
