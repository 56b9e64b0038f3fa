//! The stored entities' ids as a job's connector sees them
//! ([`syncway_connectors::StoredIds`]): read from the connection's entities
//! through the worker's pool.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use syncway_connectors::{SourceError, StoredIds};
use syncway_store::Pool;
use uuid::Uuid;

/// The connection's stored ids, as a job's connector reads them.
pub fn for_connection(context: &crate::Context, connection: Uuid) -> Option<Arc<dyn StoredIds>> {
    Some(Arc::new(ConnectionIds {
        pool: context.pool.clone(),
        connection,
    }))
}

pub struct ConnectionIds {
    pub pool: Pool,
    pub connection: Uuid,
}

impl StoredIds for ConnectionIds {
    fn page<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>> {
        Box::pin(async move {
            let unavailable = |error: String| SourceError::Transient {
                message: format!("reading the stored entities' ids: {error}"),
                retry_after: None,
            };
            let client = self
                .pool
                .get()
                .await
                .map_err(|error| unavailable(error.to_string()))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            syncway_store::entities::ids_with_prefix(&client, self.connection, prefix, after, limit)
                .await
                .map_err(|error| unavailable(error.to_string()))
        })
    }
}
