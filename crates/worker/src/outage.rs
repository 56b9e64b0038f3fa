//! Retrying store operations through a Postgres outage.

use std::future::Future;
use std::time::Duration;

use syncway_store::StoreError;
use tokio_util::sync::CancellationToken;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a retried operation gave up.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp {
    /// Shutdown began while Postgres was unreachable.
    #[error("stopped while the database was unavailable")]
    Stopped,
    /// A failure that retrying cannot fix.
    #[error(transparent)]
    Failed(StoreError),
}

/// Runs `operation` until it succeeds, retrying with exponential backoff
/// while Postgres is unavailable; other errors are returned at once.
pub async fn while_unavailable<T, F, Fut>(
    stopping: &CancellationToken,
    what: &str,
    mut operation: F,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = MIN_BACKOFF;
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_unavailable() => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), retry_in = ?backoff, "{what}: database unavailable");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopping.cancelled() => return Err(GaveUp::Stopped),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => return Err(GaveUp::Failed(error)),
        }
    }
}
