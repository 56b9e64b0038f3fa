//! Webhook delivery (CONTRACT.md §10): `SYNCWAY_WEBHOOKS__*`, read by
//! worker processes, whose deliverers send the messages.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// An attempt that has no 2xx answer within this many seconds failed.
    pub timeout_seconds: u64,
    /// A subscription whose deliveries all failed for this many hours is
    /// disabled.
    pub disable_after_hours: u32,
    /// Attempts one worker process has in flight at most.
    pub concurrency: usize,
    /// Attempts in flight to one subscription at most, across all workers
    /// (1 while its deliveries fail).
    pub per_endpoint: u16,
    /// Whether this process delivers at all.
    pub enabled: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout_seconds: 15,
            disable_after_hours: 120,
            concurrency: 256,
            per_endpoint: 64,
            enabled: true,
        }
    }
}
