//! Every SQL statement syncway runs against its own database lives in this
//! crate (an architectural invariant): the pool, the migrations runner, and
//! one function per statement, grouped by table. Functions take
//! `&impl GenericClient` so they work on a pooled client or inside a
//! transaction alike, and every state change is guarded in its WHERE clause.

pub mod api_keys;
pub mod collections;
pub mod connections;
pub mod entities;
mod error;
pub mod jobs;
pub mod outbox;
mod pool;

pub use deadpool_postgres::{GenericClient, Pool};
pub use error::StoreError;
pub use pool::{PoolSettings, connect, migrate, open};

/// Name of the unique constraint on a collection's readable id.
pub const COLLECTION_READABLE_ID_UNIQUE: &str = "collections_readable_id_unique";
