//! The heartbeat: renews a running job's lease, and tells the run when the
//! job is cancelled or lost.

use std::sync::Arc;
use std::time::Duration;

use syncway_model::JobStatus;
use syncway_store::jobs;
use tokio::sync::watch;

use crate::Context;
use crate::running::Signal;

/// Renews the lease every third of its length; reports a cancel request or
/// the loss of the job.
pub(crate) async fn heartbeat(
    context: Arc<Context>,
    job_id: uuid::Uuid,
    lease: uuid::Uuid,
    signal: Arc<watch::Sender<Signal>>,
) {
    let period = Duration::from_secs_f64(context.lease_seconds / 3.0);
    loop {
        tokio::time::sleep(period).await;
        let renewed = async {
            let client = context.pool.get().await?;
            jobs::heartbeat(&client, job_id, lease, context.lease_seconds).await
        }
        .await;
        match renewed {
            Ok(Some(JobStatus::Cancelling)) => {
                context.running.renewed(job_id);
                signal.send_replace(Signal::Cancel);
            }
            Ok(Some(_)) => context.running.renewed(job_id),
            Ok(None) => {
                signal.send_replace(Signal::Lost);
                return;
            }
            Err(error) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "heartbeat failed; retrying");
            }
        }
    }
}
