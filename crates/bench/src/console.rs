//! `console`: the console's pages with a long history.
//!
//! `connections` stub connections are made through the API and
//! `history` finished jobs (a busy deployment's mix, 30 days) added
//! straight into Postgres, with a full day of per-minute samples. A session
//! signs in as a person would, then each page is asked for `samples` times
//! in turn, one request at a time; the time to the whole page is recorded
//! (loopback: what the server takes). Then a job's page's event stream is
//! followed while small jobs run: from each job's commit to the `end`
//! event's arrival.

use anyhow::Context;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::history::{self, Shape};
use crate::processes::{
    BenchEnv, Services, build_binaries, create_connections, nearest_rank, timed_request,
};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Finished jobs in history.
    #[arg(long, default_value_t = 3_000_000)]
    history: u64,
    /// Source connections of the organization.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Requests timed per page.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Jobs whose end is followed on their page.
    #[arg(long, default_value_t = 20)]
    progress_jobs: usize,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_console_key";
/// The target for a page's server time, p99.
const TARGET_MS: f64 = 150.0;

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let mut env = BenchEnv::create(&options.services).await?;
    let outcome = measure(&options, &mut env).await;
    env.destroy().await?;
    outcome
}

fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .find_map(|value| {
            let (pair, _) = value.to_str().ok()?.split_once(';')?;
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| format!("{key}={value}"))
        })
}

fn csrf_of(page: &str) -> anyhow::Result<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).context("no CSRF field")? + marker.len();
    Ok(page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Signs in as a person would; the session's cookie.
async fn sign_in(http: &reqwest::Client, api: &str) -> anyhow::Result<String> {
    let form = http.get(format!("{api}/console/sign-in")).send().await?;
    let pre = cookie_of(&form, "syncway_sign_in").context("no sign-in cookie")?;
    let csrf = csrf_of(&form.text().await?)?;
    let answer = http
        .post(format!("{api}/console/sign-in"))
        .header(COOKIE, pre)
        .header("origin", api)
        .form(&[("key", KEY), ("csrf", &csrf)])
        .send()
        .await?;
    cookie_of(&answer, "syncway_session").context("no session: the sign-in failed")
}

async fn measure(options: &Options, env: &mut BenchEnv) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let api = env.start_api(&http, KEY, &[]).await?;
    env.start_worker(&http, &[("SYNCWAY_RETENTION__ENABLED", "false".to_owned())])
        .await?;
    let db = env.client().await?;
    let body = json!({"short_name": "stub", "config": {"entity_count": 1}});
    let connections =
        create_connections(&http, &api, KEY, "console", body, options.connections).await?;
    eprintln!(
        "{} connections made; loading {} jobs of history",
        connections.len(),
        options.history
    );
    let shape = Shape {
        span_days: 30,
        total: options.history,
        mixed: true,
    };
    history::load(&db, &connections, 0, options.history, &shape, true).await?;
    db.batch_execute(
        "INSERT INTO console_samples (minute, ready, unacked, oldest_pending_seconds, started,
             completed, failed, workers, dead_letters, outbox_pending)
         SELECT date_trunc('minute', now()) - make_interval(mins => i), i % 50, i % 7, i % 30,
                1000 + i % 100, 990 + i % 90, i % 10, 2, 0, i % 3
         FROM generate_series(2, 1440) AS i
         ON CONFLICT (minute) DO NOTHING;
         ANALYZE",
    )
    .await?;
    let session = sign_in(&http, &api).await?;
    let pages = pages(&db, &http, &api, &session, &connections).await?;
    let mut figures = Vec::new();
    for (what, path) in &pages {
        let mut histogram = Histogram::<u64>::new(3)?;
        for _ in 0..options.samples {
            let request = http.get(format!("{api}{path}")).header(COOKIE, &session);
            histogram.record(timed_request(request, path).await?)?;
        }
        let at = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        figures.push((what.clone(), at(0.5), at(0.99)));
    }
    let progress = progress(options, &http, &api, &session, &db).await?;
    print(options, &figures, &progress);
    Ok(())
}

/// The pages timed: (what, path).
async fn pages(
    db: &tokio_postgres::Client,
    http: &reqwest::Client,
    api: &str,
    session: &str,
    connections: &[Uuid],
) -> anyhow::Result<Vec<(String, String)>> {
    let job = db
        .query_one(
            "SELECT source_connection_id, id FROM sync_jobs ORDER BY created_at DESC LIMIT 1 OFFSET 1000",
            &[],
        )
        .await?;
    let (connection, job): (Uuid, Uuid) = (job.get(0), job.get(1));
    // A page deep in the list: its `after`, followed 50 pages in.
    let mut deep = "/console/jobs".to_owned();
    for _ in 0..50 {
        let page = http
            .get(format!("{api}{deep}"))
            .header(COOKIE, session)
            .send()
            .await?
            .text()
            .await?;
        let marker = "href=\"/console/jobs?after=";
        let Some(at) = page.find(marker) else { break };
        let token = page[at + marker.len()..]
            .split('"')
            .next()
            .unwrap_or_default();
        deep = format!("/console/jobs?after={token}");
    }
    let last_page = connections.len() / 25;
    Ok(vec![
        (
            "overview (24 h of samples)".into(),
            "/console/overview".into(),
        ),
        ("jobs, first page".into(), "/console/jobs".into()),
        ("jobs, 50 pages in".into(), deep),
        ("jobs, failed".into(), "/console/jobs?status=failed".into()),
        (
            "jobs, cancelled from stub".into(),
            "/console/jobs?status=cancelled&short_name=stub".into(),
        ),
        (
            "jobs, error category".into(),
            "/console/jobs?error_category=timeout".into(),
        ),
        (
            "jobs, one connection".into(),
            format!("/console/jobs?source_connection_id={connection}"),
        ),
        (
            "a job's page".into(),
            format!("/console/jobs/{connection}/{job}"),
        ),
        (
            "connections, first page".into(),
            "/console/connections".into(),
        ),
        (
            "connections, last page".into(),
            format!("/console/connections?page={last_page}"),
        ),
        ("workers".into(), "/console/workers".into()),
        ("dead letters".into(), "/console/dead-letters".into()),
        ("pauses".into(), "/console/pauses".into()),
        ("audit log".into(), "/console/audit".into()),
        ("webhooks".into(), "/console/webhooks".into()),
    ])
}

/// Milliseconds from each job's commit (its `completed_at`) to its page's
/// stream delivering the `end` event.
async fn progress(
    options: &Options,
    http: &reqwest::Client,
    api: &str,
    session: &str,
    db: &tokio_postgres::Client,
) -> anyhow::Result<Vec<f64>> {
    let body =
        json!({"short_name": "stub", "config": {"entity_count": 200, "delay_ms_per_entity": 2}});
    let connections =
        create_connections(http, api, KEY, "progress", body, options.progress_jobs).await?;
    let mut latencies = Vec::new();
    for connection in connections {
        let job: Value = http
            .post(format!("{api}/source-connections/{connection}/run"))
            .header("x-api-key", KEY)
            .send()
            .await?
            .json()
            .await?;
        let id = job["id"].as_str().context("no job id")?.to_owned();
        let stream = http
            .get(format!("{api}/console/jobs/{connection}/{id}/events"))
            .header(COOKIE, session)
            .send()
            .await?;
        anyhow::ensure!(
            stream.status().is_success(),
            "the stream: {}",
            stream.status()
        );
        let mut bytes = stream.bytes_stream();
        let mut seen = String::new();
        let arrived = loop {
            let chunk = bytes
                .next()
                .await
                .context("the stream ended before the job")??;
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: end") {
                break chrono::Utc::now();
            }
        };
        let committed: chrono::DateTime<chrono::Utc> = db
            .query_one(
                "SELECT completed_at FROM sync_jobs WHERE id = $1::text::uuid",
                &[&id],
            )
            .await?
            .get(0);
        latencies.push((arrived - committed).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    Ok(latencies)
}

fn print(options: &Options, pages: &[(String, f64, f64)], progress: &[f64]) {
    println!(
        "console pages with {} jobs in history and {} connections, {} requests each \
         (target p99 <= {TARGET_MS:.0} ms):",
        options.history, options.connections, options.samples
    );
    for (what, p50, p99) in pages {
        println!(
            "  {what:<32} p50 {p50:>7.1} ms   p99 {p99:>7.1} ms   ({:.2} of the target)",
            p99 / TARGET_MS
        );
    }
    let mut sorted = progress.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| nearest_rank(&sorted, q);
    println!(
        "a job's page, commit to the end event in the browser's stream, {} jobs: \
         p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target <= 1000 ms)",
        sorted.len(),
        at(0.5),
        at(0.99),
        sorted.last().copied().unwrap_or(f64::NAN)
    );
}
