//! The longest time any job had no live owner, sampled while a scenario
//! runs, and the history of the jobs whose gap passed the bound.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::LEASE;
use crate::processes::BenchEnv;

/// What the sampler saw of one job: each change of phase, owner, attempt
/// or re-enqueue time, with when (since the watch started).
#[derive(Debug, Default)]
pub(super) struct History {
    pub changes: Vec<(Duration, String)>,
}

/// What a scenario's watch found.
pub(super) struct Watched {
    pub worst: Duration,
    /// The most jobs one worker held live leases of at once.
    pub most_in_flight: i64,
    /// The jobs whose longest gap passed the bound, with that gap and
    /// their history.
    pub over: Vec<(Uuid, Duration, History)>,
}

/// Samples every job's phase every 50 ms; keeps the longest time any job
/// had no live owner, and the most live leases one worker held at once.
pub(super) struct Watch {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Watched>,
}

impl Watch {
    /// `bound` is the gap past which a job's history is kept.
    pub async fn start(env: &BenchEnv, bound: Duration) -> anyhow::Result<Self> {
        let url = env.database_url();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move { sample(url, bound, stopped).await });
        Ok(Watch { stop, task })
    }

    pub async fn stop(self) -> anyhow::Result<Watched> {
        self.stop.cancel();
        Ok(self.task.await?)
    }
}

async fn sample(
    url: String,
    bound: Duration,
    stopped: tokio_util::sync::CancellationToken,
) -> Watched {
    let began = Instant::now();
    let mut open: HashMap<Uuid, Instant> = HashMap::new();
    let mut histories: HashMap<Uuid, (String, History)> = HashMap::new();
    let mut gaps: HashMap<Uuid, Duration> = HashMap::new();
    let mut client = None;
    // Gaps are counted while the database answers: a job cannot be claimed
    // (nor its lease renewed) while it is away.
    let mut reachable_since = Instant::now();
    let mut most_in_flight = 0;
    while !stopped.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if client.is_none() {
            client = connect(&url).await;
            reachable_since = Instant::now();
        }
        let Some(db) = &client else { continue };
        let rows = match db
            .query(
                "SELECT id, job_phase(status, lease_owner, lease_expires_at, retry_at),
                        extract(epoch FROM now() - (lease_expires_at
                            - make_interval(secs => $1)))::float8,
                        format('%s %s attempt %s owner %s requeued %s ago',
                            status, job_phase(status, lease_owner, lease_expires_at, retry_at),
                            attempt, COALESCE(lease_owner, '-'),
                            COALESCE(to_char(now() - requeued_at, 'SS.MS'), 'never')),
                        COALESCE(lease_owner, '')
                 FROM sync_jobs WHERE started_at IS NOT NULL",
                &[&(LEASE as f64)],
            )
            .await
        {
            Ok(rows) => rows,
            Err(_) => {
                // The server went away (a scenario's fault): the open gaps
                // go on counting.
                client = None;
                continue;
            }
        };
        let mut in_flight: HashMap<String, i64> = HashMap::new();
        for row in rows {
            let id: Uuid = row.get(0);
            let phase: String = row.get(1);
            let state: String = row.get(3);
            if phase == "leased" {
                *in_flight.entry(row.get(4)).or_default() += 1;
            }
            let (last, history) = histories.entry(id).or_default();
            // The re-enqueue age changes every sample; compare without it.
            let key = state
                .split(" requeued")
                .next()
                .unwrap_or_default()
                .to_owned();
            if *last != key {
                history.changes.push((began.elapsed(), state));
                *last = key;
            }
            if matches!(phase.as_str(), "expired" | "handed_back") {
                let since = row.get::<_, Option<f64>>(2).unwrap_or(0.0).max(0.0);
                let renewed = Instant::now() - Duration::from_secs_f64(since);
                open.entry(id)
                    .or_insert_with(|| renewed.max(reachable_since));
            } else if let Some(start) = open.remove(&id) {
                let gap = gaps.entry(id).or_default();
                *gap = (*gap).max(start.elapsed());
            }
        }
        most_in_flight = in_flight.values().copied().fold(most_in_flight, i64::max);
    }
    let worst = gaps.values().copied().max().unwrap_or_default();
    let over = gaps
        .into_iter()
        .filter(|(_, gap)| *gap > bound)
        .map(|(id, gap)| {
            let history = histories.remove(&id).map(|(_, h)| h).unwrap_or_default();
            (id, gap, history)
        })
        .collect();
    Watched {
        worst,
        most_in_flight,
        over,
    }
}

async fn connect(url: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}
