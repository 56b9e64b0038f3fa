//! The jobs running in this process and the cancels that reach them: the
//! registry each run joins, and the listener on the control exchange that
//! signals the run a cancel names.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncway_model::ControlMessage;
use syncway_queue::ControlConsumer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Context;

/// The jobs running in this process, by id, each with the channel that
/// tells its run to stop (a cancel from the control exchange lands here)
/// and when its lease was last renewed.
#[derive(Debug, Default)]
pub(crate) struct Running(std::sync::Mutex<HashMap<uuid::Uuid, Entry>>);

#[derive(Debug)]
struct Entry {
    signal: Arc<watch::Sender<Signal>>,
    renewed: Instant,
}

/// Whether this process runs a job, as a delivery of it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    NotHere,
    /// Runs here, its lease renewed within the lease's length.
    Live,
    /// Runs here, but its lease has not been renewed for a lease's length
    /// (the process is cut off from the database): the run has likely lost
    /// the job to another worker.
    Stale,
}

impl Running {
    pub fn insert(&self, job_id: uuid::Uuid, signal: Arc<watch::Sender<Signal>>) {
        if let Ok(mut running) = self.0.lock() {
            let renewed = Instant::now();
            running.insert(job_id, Entry { signal, renewed });
        }
    }

    /// The job's lease was renewed just now.
    pub fn renewed(&self, job_id: uuid::Uuid) {
        if let Ok(mut running) = self.0.lock()
            && let Some(entry) = running.get_mut(&job_id)
        {
            entry.renewed = Instant::now();
        }
    }

    pub fn local(&self, job_id: uuid::Uuid, lease: Duration) -> Local {
        let Ok(running) = self.0.lock() else {
            return Local::NotHere;
        };
        match running.get(&job_id) {
            None => Local::NotHere,
            Some(entry) if entry.renewed.elapsed() <= lease => Local::Live,
            Some(_) => Local::Stale,
        }
    }

    pub fn remove(&self, job_id: uuid::Uuid) {
        if let Ok(mut running) = self.0.lock() {
            running.remove(&job_id);
        }
    }

    /// Tells the job's run to stop and end `cancelled`; false when the job
    /// does not run here.
    pub fn cancel(&self, job_id: uuid::Uuid) -> bool {
        let signal = self
            .0
            .lock()
            .ok()
            .and_then(|running| running.get(&job_id).map(|entry| entry.signal.clone()));
        match signal {
            Some(signal) => {
                signal.send_replace(Signal::Cancel);
                true
            }
            None => false,
        }
    }
}

/// What the heartbeat tells the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Running,
    Cancel,
    Lost,
}

/// Hands each cancel from the control exchange to the job's run, if it runs
/// here, until the channel closes (the consume loop reconnects) or `stop`;
/// then closes the channel, before the consume loop closes the connection.
pub(crate) async fn listen_for_cancels(
    context: Arc<Context>,
    mut control: ControlConsumer,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            message = control.next() => message,
            () = stop.cancelled() => break,
        };
        let Some(message) = message else { break };
        let body = match message {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "control channel failed");
                break;
            }
        };
        match ControlMessage::decode(&body) {
            Ok(message) => {
                if context.running.cancel(message.cancel_job_id) {
                    context.metrics.cancels_received.inc();
                    tracing::info!(job_id = %message.cancel_job_id, "cancel received; stopping the job");
                }
            }
            Err(error) => tracing::warn!(%error, "ignoring an unreadable control message"),
        }
    }
    control.close().await;
}
