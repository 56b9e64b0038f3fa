//! The trigger load the benchmarks share: one run of every connection,
//! from concurrent HTTP clients, each latency recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

/// What the triggers took.
pub struct Triggered {
    pub elapsed: Duration,
    /// Every answer's latency (µs), refusals too.
    pub latencies: Histogram<u64>,
    /// Triggers not answered with a success.
    pub refused: usize,
}

/// Triggers a run of every connection from `clients` clients.
pub async fn trigger_all(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    connections: &[impl ToString],
    clients: usize,
) -> anyhow::Result<Triggered> {
    let queue: Vec<String> = connections.iter().map(ToString::to_string).collect();
    let queue = Arc::new(Mutex::new(queue));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let (http, api, key) = (http.clone(), api.to_owned(), key.to_owned());
        let (queue, latencies, refused) = (queue.clone(), latencies.clone(), refused.clone());
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
                let _ = latencies.lock().await.record(micros);
                if !answered {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    futures_util::future::join_all(tasks).await;
    let latencies = latencies.lock().await.clone();
    Ok(Triggered {
        elapsed: started.elapsed(),
        latencies,
        refused: refused.load(Ordering::Relaxed),
    })
}
