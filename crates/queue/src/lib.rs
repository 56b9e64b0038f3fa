//! The only crate that imports lapin (an architectural invariant): the broker
//! topology, confirmed publishing, and job consumption. Callers see
//! [`Broker`], [`Publisher`], [`JobConsumer`] and [`JobDelivery`], never an
//! AMQP type.
//!
//! Topology, every name prefixed by the namespace so that deployments and
//! tests can share one broker:
//! - `<ns>.sync_jobs`: durable quorum queue of job messages. Rejected
//!   messages, and messages delivered more than [`DELIVERY_LIMIT`] times,
//!   are dead-lettered.
//! - `<ns>.dead` (fanout exchange) -> `<ns>.sync_jobs.dead` (durable queue):
//!   messages that cannot be run, kept for an operator to inspect.
//! - `<ns>.sync_jobs.delay.0` .. `.9`: quorum delay queues for retries and
//!   fair-share waits. A message waits out its own TTL, then is
//!   dead-lettered (at least once) back to `<ns>.sync_jobs`.
//! - `<ns>.control` (fanout exchange): control messages (cancel) to every
//!   worker, each on an exclusive queue of its own.

mod broker;
mod consumer;
mod inspect;
mod publisher;

pub use broker::{Broker, QueueError, Topology, broker_urls, delete_namespace, with_heartbeat};
pub use consumer::{ControlConsumer, JobConsumer, JobDelivery};
pub use inspect::{DeadLetter, QueueStats};
pub use publisher::Publisher;

/// Quorum-queue delivery limit: a message redelivered this many times (a
/// worker crash loop, say) is dead-lettered instead of delivered again.
pub const DELIVERY_LIMIT: i64 = 20;
