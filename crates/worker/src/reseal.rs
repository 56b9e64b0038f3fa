//! Credentials opened with a previous encryption key (or the old format)
//! are sealed again with the current key when a run opens them.

use uuid::Uuid;

use crate::Context;

/// Seals `credentials` (opened from `sealed`) again with the current key;
/// a failure only leaves them as they are.
pub(crate) async fn reseal(
    context: &Context,
    connection: Uuid,
    sealed: &[u8],
    credentials: &serde_json::Value,
) {
    let Ok(fresh) = context.cipher.seal(connection, credentials) else {
        tracing::warn!("could not seal the credentials again; they stay as they are");
        return;
    };
    let resealed = async {
        let client = context.pool.get().await?;
        syncway_store::connections::reseal_credentials(&client, connection, sealed, &fresh).await
    }
    .await;
    match resealed {
        Ok(_) => tracing::info!("credentials sealed again with the current key"),
        Err(error) => {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(error)), "could not seal the credentials again")
        }
    }
}
