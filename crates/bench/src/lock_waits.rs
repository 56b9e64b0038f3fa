//! Sampling lock waits while a benchmark runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
