//! The load and the watch of the `growth` benchmark: triggering one job
//! per connection from concurrent clients, and sampling lock waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use uuid::Uuid;

/// Triggers a run of every connection from `clients` clients; returns how
/// long the triggers took and their latencies (µs).
pub async fn trigger_all(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    connections: &[Uuid],
    clients: usize,
) -> anyhow::Result<(Duration, Histogram<u64>)> {
    let queue = Arc::new(Mutex::new(connections.to_vec()));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let (http, api, key) = (http.clone(), api.to_owned(), key.to_owned());
        let (queue, latencies) = (queue.clone(), latencies.clone());
        tokio::spawn(async move {
            loop {
                let Some(connection) = queue.lock().await.pop() else {
                    return;
                };
                let sent = Instant::now();
                let answered = http
                    .post(format!("{api}/source-connections/{connection}/run"))
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                if answered {
                    let _ = latencies.lock().await.record(micros);
                }
            }
        })
    });
    futures_util::future::join_all(tasks).await;
    let latencies = latencies.lock().await.clone();
    Ok((started.elapsed(), latencies))
}

/// Samples `pg_stat_activity` every 10 ms for sessions waiting on a lock,
/// and keeps the longest wait seen.
pub struct LockWaits {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl LockWaits {
    pub async fn watch(database_url: String) -> anyhow::Result<Self> {
        let (client, connection) =
            tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut longest: f64 = 0.0;
            while !stopping.load(Ordering::Relaxed) {
                if let Ok(row) = client
                    .query_one(
                        "SELECT COALESCE(max(extract(epoch FROM now() - state_change) * 1000), 0)::float8
                         FROM pg_stat_activity
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                {
                    longest = longest.max(row.get(0));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            longest
        });
        Ok(LockWaits { stop, task })
    }

    /// The longest lock wait seen (ms).
    pub async fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(f64::NAN)
    }
}
