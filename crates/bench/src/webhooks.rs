//! `webhooks`: job status changes delivered to a local receiver. Jobs are
//! triggered at a steady rate on stub connections whose organization has
//! three subscriptions (sync.pending, sync.running, sync.completed).
//! Rounds: three healthy endpoints (twice: their spread is the noise);
//! one healthy beside one answering 500 half the time and one hanging past
//! the timeout (the healthy one's p99 must stay within the spread); and
//! three healthy with the delivering worker SIGKILLed mid-stream (a second
//! worker goes on; every message must arrive at least once, duplicates are
//! counted).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::processes::{BenchEnv, Services, build_binaries, create_connections};
use crate::receiver::{Arrival, Receiver};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Jobs per round (one per connection).
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Jobs triggered per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Rounds with three healthy endpoints.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[command(flatten)]
    services: Services,
}

const KEY: &str = "sw_bench_webhooks_key";
const EVENTS: [&str; 3] = ["sync.pending", "sync.running", "sync.completed"];
/// The hanging endpoint answers only after this (the timeout is 15 s).
const HANG: Duration = Duration::from_secs(20);
const ROUND_DEADLINE: Duration = Duration::from_secs(300);

struct Round {
    deliveries_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// p99 of `ok/1` alone.
    first_p99_ms: f64,
    lost: usize,
    duplicates: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    build_binaries()?;
    let mut env = BenchEnv::create(&options.services).await?;
    let outcome = measure(&options, &mut env).await;
    env.destroy().await?;
    outcome
}

async fn measure(options: &Options, env: &mut BenchEnv) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let loopback = ("SYNCWAY_CONNECTORS__ALLOW_CIDRS", "127.0.0.1/32".to_owned());
    let api = env
        .start_api(&http, KEY, std::slice::from_ref(&loopback))
        .await?;
    let worker_vars = [
        loopback.clone(),
        ("SYNCWAY_WORKER__CONCURRENCY", "16".to_owned()),
    ];
    env.start_worker(&http, &worker_vars).await?;
    let receiver = Receiver::start(HANG).await?;
    let connections = create_connections(
        &http,
        &api,
        KEY,
        "webhooks bench",
        json!({"short_name": "stub", "config": {"entity_count": 1}}),
        options.jobs,
    )
    .await?;
    let calls = Calls {
        http: &http,
        api: &api,
    };
    let mut subscriptions = Vec::new();
    for n in 1..=3 {
        subscriptions.push(calls.subscribe(&format!("{}/ok/{n}", receiver.url)).await?);
    }
    let mut healthy = Vec::new();
    for round in 0..options.rounds {
        let result = round_of(options, &calls, &receiver, &connections, 3, None).await?;
        eprintln!("healthy round {} done", round + 1);
        healthy.push(result);
    }
    // One healthy beside a flaky and a hanging endpoint.
    for id in subscriptions.drain(1..) {
        calls.unsubscribe(&id).await?;
    }
    let flaky = calls
        .subscribe(&format!("{}/flaky/1", receiver.url))
        .await?;
    let hang = calls.subscribe(&format!("{}/hang/1", receiver.url)).await?;
    let faulty = round_of(options, &calls, &receiver, &connections, 1, None).await?;
    eprintln!("faulty round done");
    calls.unsubscribe(&flaky).await?;
    calls.unsubscribe(&hang).await?;
    // Three healthy again, and the first worker killed mid-stream.
    for n in 2..=3 {
        subscriptions.push(calls.subscribe(&format!("{}/ok/{n}", receiver.url)).await?);
    }
    env.start_worker(&http, &worker_vars).await?;
    let killed = round_of(options, &calls, &receiver, &connections, 3, Some(env)).await?;
    print(options, &healthy, &faulty, &killed);
    Ok(())
}

struct Calls<'a> {
    http: &'a reqwest::Client,
    api: &'a str,
}

impl Calls<'_> {
    async fn subscribe(&self, url: &str) -> anyhow::Result<String> {
        let body: Value = self
            .http
            .post(format!("{}/webhooks/subscriptions", self.api))
            .header("x-api-key", KEY)
            .json(&json!({"url": url, "event_types": EVENTS}))
            .send()
            .await?
            .json()
            .await?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no subscription in {body}"))
    }

    async fn unsubscribe(&self, id: &str) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/webhooks/subscriptions/{id}", self.api))
            .header("x-api-key", KEY)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// Triggers every connection at `rate` per second, without waiting for
/// answers (each is its own task).
async fn trigger_paced(calls: &Calls<'_>, connections: &[Uuid], rate: u32) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate as usize / 100).max(1);
    let mut tasks = Vec::with_capacity(connections.len());
    for chunk in connections.chunks(per_tick) {
        tick.tick().await;
        for connection in chunk {
            let request = calls
                .http
                .post(format!("{}/source-connections/{connection}/run", calls.api))
                .header("x-api-key", KEY);
            tasks.push(tokio::spawn(async move {
                let _ = request.send().await;
            }));
        }
    }
    futures_util::future::join_all(tasks).await;
}

/// One round: every connection triggered; waits until each message has
/// reached each of the `healthy` `/ok` endpoints. With `kill`, the first
/// worker is SIGKILLed once half of them arrived.
async fn round_of(
    options: &Options,
    calls: &Calls<'_>,
    receiver: &Receiver,
    connections: &[Uuid],
    healthy: usize,
    mut kill: Option<&mut BenchEnv>,
) -> anyhow::Result<Round> {
    receiver.take().await;
    let expected = connections.len() * EVENTS.len() * healthy;
    let started = Instant::now();
    trigger_paced(calls, connections, options.rate).await;
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut delivered: HashSet<(String, String)> = HashSet::new();
    let mut last_arrival = started;
    loop {
        let new = receiver.take().await;
        if !new.is_empty() {
            last_arrival = Instant::now();
        }
        for arrival in new {
            if arrival.path.starts_with("ok/") {
                delivered.insert((arrival.id.clone(), arrival.path.clone()));
            }
            arrivals.push(arrival);
        }
        if let Some(env) = kill.as_mut()
            && delivered.len() * 2 >= expected
        {
            env.signal("syncway-worker", 0, "-KILL")?;
            eprintln!(
                "worker 0 killed at {} of {expected} deliveries",
                delivered.len()
            );
            kill = None;
        }
        if delivered.len() >= expected {
            break;
        }
        if started.elapsed() > ROUND_DEADLINE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok: Vec<&Arrival> = arrivals
        .iter()
        .filter(|a| a.path.starts_with("ok/"))
        .collect();
    let mut all = Histogram::<u64>::new(3)?;
    let mut first = Histogram::<u64>::new(3)?;
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for arrival in &ok {
        let micros = (arrival.latency_ms.max(0.0) * 1000.0) as u64;
        *seen.entry((&arrival.id, &arrival.path)).or_default() += 1;
        // Latency of a message's first arrival only.
        if seen[&(arrival.id.as_str(), arrival.path.as_str())] == 1 {
            all.record(micros)?;
            if arrival.path == "ok/1" {
                first.record(micros)?;
            }
        }
    }
    let duplicates = seen.values().map(|n| n - 1).sum();
    if all.is_empty() {
        bail!("nothing was delivered");
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Round {
        deliveries_per_s: ok.len() as f64 / (last_arrival - started).as_secs_f64(),
        p50_ms: ms(&all, 0.5),
        p99_ms: ms(&all, 0.99),
        first_p99_ms: ms(&first, 0.99),
        lost: expected.saturating_sub(delivered.len()),
        duplicates,
    })
}

fn print(options: &Options, healthy: &[Round], faulty: &Round, killed: &Round) {
    println!(
        "\nsyncway webhooks: {} jobs per round at {} jobs/s, 3 events each, 1 worker x 16 (a second for the kill round)",
        options.jobs, options.rate
    );
    println!(
        "| round | deliveries/s | change -> delivered p50 | p99 | lost | duplicates | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, round) in healthy.iter().enumerate() {
        println!(
            "| 3 healthy endpoints #{} | {:.0} | {:.1} ms | {:.1} ms | {} | {} | p99 <= 1000 ms, 0 lost |",
            n + 1,
            round.deliveries_per_s,
            round.p50_ms,
            round.p99_ms,
            round.lost,
            round.duplicates
        );
    }
    let spread: Vec<f64> = healthy.iter().map(|r| r.first_p99_ms).collect();
    let (low, high) = spread
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    println!(
        "| healthy beside flaky (500 half the time) and hanging (20 s) | {:.0} | {:.1} ms | {:.1} ms | {} | {} | healthy p99 within {low:.1}-{high:.1} (+ spread {:.1}) |",
        faulty.deliveries_per_s,
        faulty.p50_ms,
        faulty.p99_ms,
        faulty.lost,
        faulty.duplicates,
        high - low
    );
    println!(
        "| 3 healthy, delivering worker SIGKILLed mid-stream | {:.0} | {:.1} ms | {:.1} ms | {} | {} | 0 lost |",
        killed.deliveries_per_s, killed.p50_ms, killed.p99_ms, killed.lost, killed.duplicates
    );
}
