//! Webhooks (CONTRACT.md §10): subscriptions, messages and their attempts,
//! and the deliverers' claims. Messages and deliveries are written by
//! triggers (migration V18) in the statements that make the changes they
//! report.

pub mod deliveries;
pub mod messages;
pub mod subscriptions;
