//! Webhooks as Standard Webhooks v1 describes them (CONTRACT.md §10):
//! the event types, the signing secrets and signatures ([`signature`]),
//! the retry schedule ([`schedule`]) and one delivery over HTTP under the
//! egress policy ([`send`]). No database and no queue here: the store
//! keeps messages and deliveries, the worker runs the deliverer.

pub mod schedule;
pub mod send;
pub mod signature;

/// Every event type a subscription may ask for. `source_connection.auth_completed`
/// is in Airweave's list (its SDK offers it); syncway has no OAuth flow and
/// never sends it, but a subscription may name it.
pub const EVENT_TYPES: [&str; 12] = [
    "sync.pending",
    "sync.running",
    "sync.cancelling",
    "sync.completed",
    "sync.failed",
    "sync.cancelled",
    "source_connection.created",
    "source_connection.auth_completed",
    "source_connection.deleted",
    "collection.created",
    "collection.updated",
    "collection.deleted",
];

/// Whether `name` is an event type.
pub fn is_event_type(name: &str) -> bool {
    EVENT_TYPES.contains(&name)
}
