//! Every SQL statement syncway runs against its own database lives in this
//! crate (an architectural invariant): the pool, the migrations runner, and
//! one function per statement, grouped by table. Functions take
//! `&impl GenericClient` so they work on a pooled client or inside a
//! transaction alike, and every state change is guarded in its WHERE clause.

pub mod api_keys;
pub mod api_processes;
pub mod batcher;
pub mod budgets;
pub mod collections;
pub mod connections;
pub mod console;
pub mod entities;
mod error;
pub mod history;
mod job_row;
pub mod jobs;
pub mod ops;
pub mod organizations;
pub mod outbox;
pub mod pauses;
mod pool;
pub mod releases;
pub mod retention;
pub mod schedules;
pub mod tasks;
pub mod webhooks;

pub use batcher::{Batcher, BatcherGone, Shape, all_or_each, spawn_on_pool};
pub use deadpool_postgres::{GenericClient, Pool};
pub use error::StoreError;
pub use pool::{PoolSettings, connect, migrate, open};

/// Whether the database answers (the health probes of both binaries).
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// Name of the unique constraint on a collection's readable id.
pub const COLLECTION_READABLE_ID_UNIQUE: &str = "collections_readable_id_unique";
