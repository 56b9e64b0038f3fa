//! The longest time any job had no live owner, sampled while a scenario
//! runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::LEASE;
use crate::processes::BenchEnv;

/// Samples every job's phase every 100 ms; keeps the longest time any job
/// had no live owner.
pub(super) struct Watch {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Duration>,
}

impl Watch {
    pub async fn start(env: &BenchEnv) -> anyhow::Result<Self> {
        let url = env.database_url();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut open: HashMap<Uuid, Instant> = HashMap::new();
            let mut worst = Duration::ZERO;
            let mut client = None;
            // Gaps are counted while the database answers: a job cannot
            // be claimed (nor its lease renewed) while it is away.
            let mut reachable_since = Instant::now();
            while !stopped.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if client.is_none() {
                    client = connect(&url).await;
                    reachable_since = Instant::now();
                }
                let Some(db) = &client else { continue };
                let rows = match db
                    .query(
                        "SELECT id, job_phase(status, lease_owner, lease_expires_at, retry_at),
                                extract(epoch FROM now() - (lease_expires_at
                                    - make_interval(secs => $1)))::float8
                         FROM sync_jobs WHERE started_at IS NOT NULL",
                        &[&(LEASE as f64)],
                    )
                    .await
                {
                    Ok(rows) => rows,
                    Err(_) => {
                        // The server went away (a scenario's fault): the
                        // open gaps go on counting.
                        client = None;
                        continue;
                    }
                };
                for row in rows {
                    let id: Uuid = row.get(0);
                    let phase: String = row.get(1);
                    if matches!(phase.as_str(), "expired" | "handed_back") {
                        let since = row.get::<_, Option<f64>>(2).unwrap_or(0.0).max(0.0);
                        let renewed = Instant::now() - Duration::from_secs_f64(since);
                        open.entry(id)
                            .or_insert_with(|| renewed.max(reachable_since));
                    } else if let Some(start) = open.remove(&id) {
                        worst = worst.max(start.elapsed());
                    }
                }
            }
            worst
        });
        Ok(Watch { stop, task })
    }

    pub async fn stop(self, _env: &BenchEnv) -> anyhow::Result<Duration> {
        self.stop.cancel();
        Ok(self.task.await?)
    }
}

async fn connect(url: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}
