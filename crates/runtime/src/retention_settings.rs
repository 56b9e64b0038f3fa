//! How long history is kept (CONTRACT.md §9). A rule set to 0 is off.

use serde::Deserialize;

/// `SYNCWAY_RETENTION__*`: read by worker processes, whose maintenance
/// loop removes what is past these rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// Finished jobs (with their timelines) older than this many days go.
    pub job_days: u32,
    /// The newest this many finished jobs of every connection stay,
    /// however old.
    pub keep_per_connection: u32,
    /// Audit log entries older than this many days go.
    pub audit_days: u32,
    /// Webhook messages and their delivery attempts older than this many
    /// days go (once webhooks exist).
    pub webhook_days: u32,
    /// Whether this process runs the loop at all (one process at a time
    /// does the work; any number may take part).
    pub enabled: bool,
    /// How often the loop looks for work when the last look found none.
    pub interval_seconds: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            job_days: 30,
            keep_per_connection: 20,
            audit_days: 365,
            webhook_days: 30,
            enabled: true,
            interval_seconds: 60,
        }
    }
}
