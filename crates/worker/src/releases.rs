//! Releasing what deleted connections left at their sources (a
//! `postgres_cdc` replication slot holds the source's WAL until dropped):
//! each retention pass claims the due releases (V22) and makes them; one
//! that fails (the source unreachable) is tried again after a back-off of
//! up to an hour, and says why in `source_releases.last_error`.

use std::time::Duration;

use syncway_model::ConnectorConfig;
use syncway_store::StoreError;
use syncway_store::releases;

use crate::Context;

/// Releases per pass.
const PER_PASS: i64 = 10;
/// How long a claim holds: longer than a release can take.
const LEASE: Duration = Duration::from_secs(300);

/// Makes the due releases; returns how many succeeded.
pub async fn pass(context: &Context) -> Result<usize, StoreError> {
    let client = context.pool.get().await?;
    let due = releases::claim(&client, PER_PASS, LEASE.as_secs_f64()).await?;
    drop(client);
    let mut released = 0;
    for release in due {
        let result = make(context, &release).await;
        let client = context.pool.get().await?;
        match result {
            Ok(()) => {
                releases::done(&client, release.connection_id).await?;
                released += 1;
                tracing::info!(connection = %release.connection_id, "released the deleted connection's source resources");
            }
            Err(error) => {
                let backoff = Duration::from_secs(30)
                    .saturating_mul(2u32.saturating_pow(release.attempts.clamp(0, 10) as u32))
                    .min(Duration::from_secs(3600));
                let next = chrono::Utc::now()
                    + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::hours(1));
                tracing::warn!(connection = %release.connection_id, %error, "releasing a deleted connection's source resources failed; trying again later");
                releases::failed(&client, release.connection_id, &error, next).await?;
            }
        }
    }
    Ok(released)
}

async fn make(context: &Context, release: &releases::Release) -> Result<(), String> {
    let config = ConnectorConfig::parse(&release.short_name, &release.config)
        .map_err(|error| format!("stored connector config is invalid: {error}"))?;
    let credentials = match &release.credentials {
        None => None,
        Some(sealed) => Some(
            context
                .cipher
                .open(release.connection_id, sealed)
                .map_err(|error| error.to_string())?
                .credentials,
        ),
    };
    syncway_connectors::release(
        &config,
        credentials.as_ref(),
        &release.connection_id.to_string(),
        &context.policy,
        &context.limits,
    )
    .await
    .map_err(|error| error.to_string())
}
