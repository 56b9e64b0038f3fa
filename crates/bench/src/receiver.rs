//! A local webhook receiver for the `webhooks` benchmark: `POST /ok/{n}`
//! answers 200 at once, `/flaky/{n}` 500 every other time, `/hang/{n}`
//! only after `hang`. Every request to `/ok` and `/flaky` is recorded with
//! its `webhook-id`, the path and how long after the status change (the
//! payload's timestamp) it arrived.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

/// One request that arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub id: String,
    /// `ok/1`, `flaky/1`, ...
    pub path: String,
    /// Arrival minus the payload's timestamp, in ms.
    pub latency_ms: f64,
}

#[derive(Clone)]
struct Shared {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    flaky: Arc<AtomicU64>,
    hang: Duration,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    pub url: String,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(hang: Duration) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Shared {
            arrivals: Arc::new(Mutex::new(Vec::new())),
            flaky: Arc::new(AtomicU64::new(0)),
            hang,
        };
        let arrivals = shared.arrivals.clone();
        let app = Router::new()
            .route("/{mode}/{n}", post(receive))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            url,
            arrivals,
            task,
        })
    }

    /// What arrived so far (and forgets it).
    pub async fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.arrivals.lock().await)
    }
}

async fn receive(
    State(shared): State<Shared>,
    Path((mode, n)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = Utc::now();
    let answered = match mode.as_str() {
        "hang" => {
            tokio::time::sleep(shared.hang).await;
            return StatusCode::OK;
        }
        "flaky" if shared.flaky.fetch_add(1, Ordering::Relaxed) % 2 == 0 => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::OK,
    };
    let sent: Option<DateTime<Utc>> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|payload| payload["timestamp"].as_str().map(str::to_owned))
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|at| at.with_timezone(&Utc));
    let latency_ms = sent
        .map(|sent| (now - sent).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .unwrap_or(f64::NAN);
    let id = headers
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    shared.arrivals.lock().await.push(Arrival {
        id,
        path: format!("{mode}/{n}"),
        latency_ms,
    });
    answered
}
