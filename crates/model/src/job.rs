//! The sync job: its status machine and its wire representation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Status of a sync job. Lowercase on the wire, as the Airweave SDK expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
}

/// Returned when a stored status string is not one of [`JobStatus`].
#[derive(Debug, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl JobStatus {
    /// Every status, in the order of the status machine.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelling,
        JobStatus::Cancelled,
    ];

    /// The statuses that hold a connection's single active-job slot.
    pub const ACTIVE: [JobStatus; 3] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Cancelling,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelling => "cancelling",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The legal transitions of the status machine (CONTRACT.md §1):
    /// `pending -> running | cancelled | failed`,
    /// `running -> completed | failed | cancelling | cancelled`,
    /// `cancelling -> cancelled | completed | failed`.
    /// (`running -> cancelled` only for a running job no worker holds, one
    /// waiting out a retry or handed back, which a cancel ends at once.)
    pub fn can_transition_to(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Pending, Running | Cancelled | Failed)
                | (Running, Completed | Failed | Cancelling | Cancelled)
                | (Cancelling, Cancelled | Completed | Failed)
        )
    }

    /// Every legal (from, to) pair, as [`Self::can_transition_to`] says.
    pub fn transitions() -> impl Iterator<Item = (JobStatus, JobStatus)> {
        JobStatus::ALL.into_iter().flat_map(|from| {
            JobStatus::ALL
                .into_iter()
                .filter(move |to| from.can_transition_to(*to))
                .map(move |to| (from, to))
        })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// The sync job as clients see it (`SourceConnectionJob` in the Airweave API).
/// Every field is always present; absent values are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceConnectionJob {
    pub id: Uuid,
    pub source_connection_id: Uuid,
    pub status: JobStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub entities_inserted: i64,
    pub entities_updated: i64,
    pub entities_deleted: i64,
    pub entities_failed: i64,
    pub error: Option<String>,
    pub error_category: Option<String>,
    pub error_details: Option<serde_json::Value>,
    /// Who asked for the job (an addition to Airweave's object; its SDKs'
    /// models accept extra fields).
    pub trigger: JobTrigger,
    /// The schedule tick a scheduled job ran for; null for API triggers.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Why the job waits, if it does (an addition, CONTRACT.md §11).
    pub waiting_reason: Option<Box<WaitingReason>>,
}

/// Why a job waits: a code, and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingReason {
    pub code: String,
    pub message: String,
}

impl WaitingReason {
    /// Every code, in the order of precedence.
    pub const CODES: [&'static str; 6] = [
        "paused_all",
        "paused_organization",
        "organization_cap",
        "source_type_cap",
        "source_budget",
        "retry_backoff",
    ];

    /// The reason a code stands for; `None` for an unknown code.
    pub fn from_code(code: &str) -> Option<Self> {
        let message = match code {
            "paused_all" => "the deployment is paused; the job starts when it is resumed",
            "paused_organization" => {
                "the organization is paused; the job starts when it is resumed"
            }
            "organization_cap" => {
                "the organization runs as many jobs as it may at once; the job starts when one ends"
            }
            "source_type_cap" => {
                "its source type runs as many jobs as the deployment allows; the job starts when one ends"
            }
            "source_budget" => "the job waits for its source's shared request budget",
            "retry_backoff" => "the job waits out the backoff before its next attempt",
            _ => return None,
        };
        Some(WaitingReason {
            code: code.to_owned(),
            message: message.to_owned(),
        })
    }
}

/// Who asked for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTrigger {
    Api,
    Schedule,
}

impl JobTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            JobTrigger::Api => "api",
            JobTrigger::Schedule => "schedule",
        }
    }
}

impl std::str::FromStr for JobTrigger {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "api" => Ok(JobTrigger::Api),
            "schedule" => Ok(JobTrigger::Schedule),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

impl SourceConnectionJob {
    /// `completed_at - started_at` in seconds, once the job is terminal.
    /// A job cancelled before it started has no duration.
    pub fn duration(
        started_at: Option<DateTime<Utc>>,
        completed_at: Option<DateTime<Utc>>,
    ) -> Option<f64> {
        let (start, end) = (started_at?, completed_at?);
        let micros = (end - start).num_microseconds()?;
        Some(micros as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::{self, *};

    #[test]
    fn only_the_contract_transitions_are_legal() {
        let legal = [
            (Pending, Running),
            (Pending, Cancelled),
            (Pending, Failed),
            (Running, Completed),
            (Running, Failed),
            (Running, Cancelling),
            (Running, Cancelled),
            (Cancelling, Cancelled),
            (Cancelling, Completed),
            (Cancelling, Failed),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(JobStatus::ALL.iter().all(|to| !from.can_transition_to(*to)));
        }
        assert_eq!(JobStatus::ALL.iter().filter(|s| s.is_terminal()).count(), 3);
    }

    #[test]
    fn statuses_round_trip_through_their_wire_names() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>().ok(), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("RUNNING".parse::<JobStatus>().is_err());
    }

    #[test]
    fn duration_needs_both_timestamps() {
        use chrono::{Duration, Utc};
        let start = Utc::now();
        let end = start + Duration::milliseconds(1500);
        assert_eq!(
            super::SourceConnectionJob::duration(Some(start), Some(end)),
            Some(1.5)
        );
        assert_eq!(super::SourceConnectionJob::duration(None, Some(end)), None);
        assert_eq!(
            super::SourceConnectionJob::duration(Some(start), None),
            None
        );
    }
}
