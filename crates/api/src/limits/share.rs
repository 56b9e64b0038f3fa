//! Each API process's share of the deployment-wide limits: it refreshes its
//! row in the registry (`api_processes`) every [`HEARTBEAT`], counts the
//! processes seen within [`LIVE_WITHIN`], and enforces 1/n. A stopping
//! process removes its row, so the others take up its share within one
//! heartbeat; one that dies is no longer counted after [`LIVE_WITHIN`].
//!
//! While Postgres cannot be reached the last count stays: the process
//! answers 503 to most requests then anyway.

use std::sync::Arc;
use std::time::Duration;

use syncway_store::Pool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Limits;

pub const HEARTBEAT: Duration = Duration::from_secs(2);
pub const LIVE_WITHIN: Duration = Duration::from_secs(6);

pub struct Share {
    pub pool: Pool,
    pub limits: Arc<Limits>,
    /// Set to the live processes' count at every heartbeat.
    pub gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Share {
    pub async fn run(self, stop: CancellationToken) {
        let id = Uuid::now_v7();
        let hostname = syncway_runtime::hostname();
        let mut every = tokio::time::interval(HEARTBEAT);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(every.tick()).await.is_some() {
            let counted = match self.pool.get().await {
                Ok(client) => {
                    syncway_store::api_processes::heartbeat(&client, id, &hostname, LIVE_WITHIN)
                        .await
                }
                Err(error) => Err(error.into()),
            };
            match counted {
                Ok(processes) => {
                    self.limits.set_processes(processes);
                    self.gauge.set(i64::from(processes));
                }
                Err(error) => tracing::debug!(error = %error, "API registry heartbeat failed"),
            }
        }
        let left = match self.pool.get().await {
            Ok(client) => syncway_store::api_processes::leave(&client, id).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = left {
            tracing::debug!(error = %error, "could not leave the API registry");
        }
    }
}
