//! Source connection status, derived from its jobs and its credentials.

use serde::{Deserialize, Serialize};

use crate::JobStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    Syncing,
    Error,
    NeedsReauth,
    Inactive,
}

impl ConnectionStatus {
    /// The status a client sees: re-authentication needs come first, then a
    /// job in flight, then the outcome of the last job.
    pub fn derive(needs_reauth: bool, last_job: Option<JobStatus>) -> Self {
        match (needs_reauth, last_job) {
            (true, _) => ConnectionStatus::NeedsReauth,
            (false, Some(status)) if !status.is_terminal() => ConnectionStatus::Syncing,
            (false, Some(JobStatus::Failed)) => ConnectionStatus::Error,
            (false, _) => ConnectionStatus::Active,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_reauth_then_activity_then_last_outcome() {
        use ConnectionStatus as C;
        assert_eq!(C::derive(true, Some(JobStatus::Running)), C::NeedsReauth);
        assert_eq!(C::derive(false, Some(JobStatus::Pending)), C::Syncing);
        assert_eq!(C::derive(false, Some(JobStatus::Cancelling)), C::Syncing);
        assert_eq!(C::derive(false, Some(JobStatus::Failed)), C::Error);
        assert_eq!(C::derive(false, Some(JobStatus::Completed)), C::Active);
        assert_eq!(C::derive(false, None), C::Active);
    }
}
